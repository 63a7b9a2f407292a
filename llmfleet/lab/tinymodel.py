"""A tiny, deterministic Qwen2-style causal LM for the local lab.

The lab must prove the whole deploy path (hub -> download -> vLLM on CPU)
without internet and in seconds, so it serves a model made here: random
weights, a byte-level BPE tokenizer trained on a built-in corpus, and a
Qwen-like chat template. Its output is gibberish; what matters is that every
file a real Hugging Face model has is present and that vLLM's Qwen2 code
accepts it.

Only numpy, ``safetensors`` and ``tokenizers`` are needed (no torch on the
control machine). The same seed always gives byte-identical files, so the
hub repo built from them gets a stable tree and the tests can check it.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from tokenizers import Tokenizer

# vLLM's CPU attention kernels accept head_dim 64 (16 is refused), so the
# shape is built around it: hidden = heads * head_dim.
HEAD_DIM = 64
SPECIAL_TOKENS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>")

# Qwen2's template without the tool-calling branches: enough for
# /v1/chat/completions to render a prompt the way a Qwen model would.
CHAT_TEMPLATE = (
    "{%- if messages[0]['role'] != 'system' %}"
    "{{- '<|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n' }}"
    "{%- endif %}"
    "{%- for message in messages %}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)

QWEN2_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}"
    r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)

CORPUS = (
    "The lab proves the whole path from a hub to a running server. "
    "Hosts download the model, install the engine and start a service. "
    "A fleet of small machines answers chat requests on a private bridge. "
    "Provisioning is idempotent: running the deploy twice changes nothing. "
    "Every host pulls wheels from the control machine and never from the internet. "
    "The quick brown fox jumps over the lazy dog while the tiny model talks nonsense. "
    "def serve(model, port):\n    return start(model=model, port=port)\n"
    "systemctl status llmfleet; journalctl -u llmfleet --since today\n"
    "Numbers 0 1 2 3 4 5 6 7 8 9 10 100 1000, punctuation: . , ; : ! ? ( ) [ ] { }\n"
    "user assistant system hello world how are you I am fine thank you\n"
)

FILES = (
    "config.json",
    "generation_config.json",
    "model.safetensors",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "README.md",
)


@dataclass(frozen=True)
class TinySpec:
    """Shape of the tiny model; defaults give a ~2 MB float32 checkpoint."""

    hidden_size: int = 128
    num_attention_heads: int = 2
    num_key_value_heads: int = 1
    num_hidden_layers: int = 2
    intermediate_size: int = 256
    vocab_target: int = 1024
    max_position_embeddings: int = 2048
    seed: int = 0

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_attention_heads


def _write_json(path: Path, data: dict) -> None:
    """Sorted keys and a trailing newline keep the bytes stable across runs."""
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")


def train_tokenizer(spec: TinySpec) -> Tokenizer:
    """Byte-level BPE like Qwen2's (same vocabulary with 1 or 8 rayon threads)."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE(unk_token=None, byte_fallback=False))
    # Qwen2's own split (single digits, etc.): transformers' Qwen2Tokenizer
    # applies it regardless of tokenizer.json, so training with it keeps the
    # ids transformers/vLLM produce equal to the ones the tokenizers library does.
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(QWEN2_SPLIT), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=spec.vocab_target,
        min_frequency=1,
        show_progress=False,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator([CORPUS] * 4, trainer=trainer)
    return tok


def _vocab_size(tokenizer_len: int) -> int:
    """Round the embedding rows up to a multiple of 64, as real checkpoints do."""
    return -(-tokenizer_len // 64) * 64


def model_config(spec: TinySpec, vocab_size: int, ids: dict[str, int]) -> dict:
    """A config.json that transformers' Qwen2Config and vLLM's Qwen2 both read."""
    return {
        "architectures": ["Qwen2ForCausalLM"],
        "model_type": "qwen2",
        "attention_dropout": 0.0,
        "bos_token_id": ids["<|endoftext|>"],
        "eos_token_id": ids["<|im_end|>"],
        "head_dim": spec.head_dim,
        "hidden_act": "silu",
        "hidden_size": spec.hidden_size,
        "initializer_range": 0.02,
        "intermediate_size": spec.intermediate_size,
        "max_position_embeddings": spec.max_position_embeddings,
        "max_window_layers": spec.num_hidden_layers,
        "num_attention_heads": spec.num_attention_heads,
        "num_hidden_layers": spec.num_hidden_layers,
        "num_key_value_heads": spec.num_key_value_heads,
        "rms_norm_eps": 1e-6,
        "rope_theta": 10000.0,
        "sliding_window": None,
        "tie_word_embeddings": True,
        "torch_dtype": "float32",
        "use_cache": True,
        "use_sliding_window": False,
        "vocab_size": vocab_size,
    }


def random_weights(spec: TinySpec, vocab_size: int) -> dict[str, np.ndarray]:
    """Qwen2ForCausalLM's tensor names and shapes, filled from a seeded RNG.

    Embeddings are tied, so there is no lm_head.weight (vLLM skips it then).
    """
    rng = np.random.default_rng(spec.seed)
    h, hd = spec.hidden_size, spec.head_dim
    q_out, kv_out = spec.num_attention_heads * hd, spec.num_key_value_heads * hd

    def normal(*shape: int) -> np.ndarray:
        return (rng.standard_normal(shape) * 0.02).astype(np.float32)

    tensors = {"model.embed_tokens.weight": normal(vocab_size, h)}
    for i in range(spec.num_hidden_layers):
        p = f"model.layers.{i}."
        tensors.update(
            {
                p + "input_layernorm.weight": np.ones(h, np.float32),
                p + "post_attention_layernorm.weight": np.ones(h, np.float32),
                p + "self_attn.q_proj.weight": normal(q_out, h),
                p + "self_attn.q_proj.bias": normal(q_out),
                p + "self_attn.k_proj.weight": normal(kv_out, h),
                p + "self_attn.k_proj.bias": normal(kv_out),
                p + "self_attn.v_proj.weight": normal(kv_out, h),
                p + "self_attn.v_proj.bias": normal(kv_out),
                p + "self_attn.o_proj.weight": normal(h, q_out),
                p + "mlp.gate_proj.weight": normal(spec.intermediate_size, h),
                p + "mlp.up_proj.weight": normal(spec.intermediate_size, h),
                p + "mlp.down_proj.weight": normal(h, spec.intermediate_size),
            }
        )
    tensors["model.norm.weight"] = np.ones(h, np.float32)
    return tensors


def tokenizer_config(ids: dict[str, int]) -> dict:
    """PreTrainedTokenizerFast reads tokenizer.json; this adds roles and template."""
    return {
        "added_tokens_decoder": {
            str(ids[t]): {
                "content": t,
                "lstrip": False,
                "normalized": False,
                "rstrip": False,
                "single_word": False,
                "special": True,
            }
            for t in SPECIAL_TOKENS
        },
        "additional_special_tokens": ["<|im_start|>", "<|im_end|>"],
        "bos_token": None,
        "chat_template": CHAT_TEMPLATE,
        "clean_up_tokenization_spaces": False,
        "eos_token": "<|im_end|>",
        "errors": "replace",
        "model_max_length": 2048,
        "pad_token": "<|endoftext|>",
        "split_special_tokens": False,
        "tokenizer_class": "PreTrainedTokenizerFast",
        "unk_token": None,
    }


def generate(out_dir: Path, spec: TinySpec | None = None) -> Path:
    """Write the full model directory to ``out_dir`` and return it.

    Files are written in place (existing ones overwritten) so a caller can
    regenerate into a git work tree and let git decide whether anything changed.
    """
    from safetensors.numpy import save_file

    spec = spec or TinySpec()
    if spec.head_dim != HEAD_DIM:
        raise ValueError(f"head_dim must be {HEAD_DIM} for vLLM's CPU backend, not {spec.head_dim}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)

    tok = train_tokenizer(spec)
    ids = {t: tok.token_to_id(t) for t in SPECIAL_TOKENS}
    vocab_size = _vocab_size(tok.get_vocab_size(with_added_tokens=True))

    (out_dir / "tokenizer.json").write_text(tok.to_str(pretty=True) + "\n")
    _write_json(out_dir / "tokenizer_config.json", tokenizer_config(ids))
    _write_json(
        out_dir / "special_tokens_map.json",
        {
            "eos_token": "<|im_end|>",
            "pad_token": "<|endoftext|>",
            "additional_special_tokens": ["<|im_start|>", "<|im_end|>"],
        },
    )
    _write_json(out_dir / "config.json", model_config(spec, vocab_size, ids))
    _write_json(
        out_dir / "generation_config.json",
        {
            "bos_token_id": ids["<|endoftext|>"],
            "eos_token_id": [ids["<|im_end|>"], ids["<|endoftext|>"]],
            "pad_token_id": ids["<|endoftext|>"],
            "do_sample": False,
            "max_new_tokens": 32,
        },
    )
    save_file(
        random_weights(spec, vocab_size),
        str(out_dir / "model.safetensors"),
        # One metadata key only: safetensors writes metadata from a hash map,
        # so several keys come out in a different order from run to run.
        metadata={"format": "pt"},
    )
    (out_dir / "model.safetensors").chmod(0o644)
    (out_dir / "README.md").write_text(_readme(spec))
    return out_dir


def _readme(spec: TinySpec) -> str:
    """A model card with YAML front matter, which olah parses into cardData."""
    return (
        "---\nlicense: apache-2.0\nlibrary_name: transformers\npipeline_tag: text-generation\n---\n"
        "# tiny-qwen2 (llmfleet lab)\n\n"
        "Random weights and a toy tokenizer generated by `llmfleet.lab.tinymodel` "
        f"(seed {spec.seed}). It exists to exercise provisioning; it outputs gibberish.\n\n"
        f"Spec: `{json.dumps(asdict(spec), sort_keys=True)}`\n"
    )


def digest(model_dir: Path) -> str:
    """sha256 over the model files in a fixed order: equal digests, equal models."""
    h = hashlib.sha256()
    for name in FILES:
        h.update(name.encode() + b"\0" + (Path(model_dir) / name).read_bytes() + b"\0")
    return h.hexdigest()


if __name__ == "__main__":  # pragma: no cover - manual use
    import sys

    target = generate(Path(sys.argv[1] if len(sys.argv) > 1 else "tiny-qwen2"))
    print(target, digest(target))
