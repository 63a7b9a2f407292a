"""Overlays and --set overrides change flags in place and refuse what they cannot do."""

from __future__ import annotations

import json

import pytest

from llmfleet.errors import ValidationError
from llmfleet.render import render
from llmfleet.settings import Settings, settings_from


def _render(catalog, rid, **sets):
    return render(catalog, catalog.recipe(rid), settings_from(sets))


def _flag(argv, name):
    i = argv.index(name)
    return argv[i + 1]


def test_tool_calling_overlay_appends_the_guides_flags(catalog) -> None:
    r = _render(catalog, "vllm-h200-bf16-multimodal", **{"overlay.tool-calling": "true"})
    assert r.argv[-3:] == ["--enable-auto-tool-choice", "--tool-call-parser", "qwen3_coder"]


def test_overlay_replaces_a_flag_instead_of_duplicating_it(catalog) -> None:
    r = _render(catalog, "vllm-h200-bf16-text", **{"overlay.thinking-off": "true"})
    assert r.argv.count("--reasoning-parser") == 1
    assert json.loads(_flag(r.argv, "--default-chat-template-kwargs")) == {"enable_thinking": False}


def test_mtp_tokens_patches_the_speculative_config(catalog) -> None:
    r = _render(catalog, "vllm-h200-fp8-latency-mtp", **{"overlay.mtp-tokens": "3"})
    assert json.loads(_flag(r.argv, "--speculative-config")) == {
        "method": "mtp",
        "num_speculative_tokens": 3,
    }


def test_mtp_tokens_needs_an_mtp_recipe(catalog) -> None:
    with pytest.raises(ValidationError, match="has no --speculative-config"):
        _render(catalog, "vllm-h200-bf16-text", **{"overlay.mtp-tokens": "2"})


def test_overlay_parameter_is_range_checked(catalog) -> None:
    with pytest.raises(ValidationError, match=r"integer in 1\.\.5"):
        _render(catalog, "vllm-h200-fp8-latency-mtp", **{"overlay.mtp-tokens": "9"})


def test_mm_attention_defaults_by_hardware(catalog) -> None:
    h200 = _render(catalog, "sglang-h200-bf16-nextn", **{"overlay.mm-attention": "true"})
    b200 = _render(catalog, "sglang-b200-bf16-nextn", **{"overlay.mm-attention": "true"})
    assert _flag(h200.argv, "--mm-attention-backend") == "fa3"
    assert _flag(b200.argv, "--mm-attention-backend") == "fa4"


def test_multithread_load_renders_the_tip_verbatim(catalog) -> None:
    r = _render(catalog, "sglang-h200-bf16-nextn", **{"overlay.multithread-load": "true"})
    assert _flag(r.argv, "--model-loader-extra-config") == (
        '{"enable_multithread_load": "true","num_threads": 64}'
    )


def test_overlay_for_another_engine_is_refused(catalog) -> None:
    with pytest.raises(ValidationError, match="has no settings for vllm"):
        _render(catalog, "vllm-h200-bf16-text", **{"overlay.cuda-ipc": "true"})


def test_max_cudagraph_capture_size(catalog) -> None:
    r = _render(catalog, "vllm-h200-bf16-text", **{"overlay.max-cudagraph-capture-size": "256"})
    assert _flag(r.argv, "--max-cudagraph-capture-size") == "256"


def test_flag_overrides_set_switch_and_drop(catalog) -> None:
    r = _render(
        catalog,
        "vllm-h200-bf16-text",
        **{
            "flag.--tensor-parallel-size": "4",
            "flag.--enforce-eager": "true",
            "flag.--enable-prefix-caching": "false",
        },
    )
    assert _flag(r.argv, "--tensor-parallel-size") == "4"
    assert "--enforce-eager" in r.argv
    assert "--enable-prefix-caching" not in r.argv
    assert r.parallel.tp == 4


def test_unknown_override_key_names_the_key_and_the_choices() -> None:
    with pytest.raises(ValidationError) as exc:
        settings_from({"prot": "8000"}, host="gpu1")
    text = str(exc.value)
    assert "gpu1: prot: unknown key" in text and "did you mean port?" in text


def test_missing_placeholder_value_names_the_setting(catalog) -> None:
    with pytest.raises(ValidationError, match="network_interface: needed by GLOO_SOCKET_IFNAME"):
        _render(catalog, "ascend-a3-w4a8-in16k-out1k-20ms")


def test_docker_runtime_without_image_is_refused(catalog) -> None:
    with pytest.raises(ValidationError, match="has no container image"):
        _render(catalog, "vllm-h200-bf16-text", runtime="docker")


def test_multinode_rank_out_of_range(catalog) -> None:
    with pytest.raises(ValidationError, match=r"node_rank: 2 is outside 0\.\.1"):
        render(catalog, catalog.recipe("vllm-gb200-bf16-2node"), Settings(), rank=2)


def test_extends_inherits_and_null_deletes(catalog) -> None:
    latest = catalog.recipe("vllm-h200-bf16-docker-latest")
    assert latest.container["image"] == "vllm/vllm-openai"
    assert latest.container["entrypoint"] == ["vllm", "serve"]
    assert latest.benchmark is None
    assert catalog.recipe("vllm-h200-bf16-docker").benchmark is not None
