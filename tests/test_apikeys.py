"""Endpoint API keys: generated once, kept 0600 on the control node, never for SGLang argv."""

import stat

import pytest

from llmfleet.apikeys import api_key_for
from llmfleet.catalog import Catalog
from llmfleet.errors import LlmfleetError
from llmfleet.settings import parse_settings

ENGINES = Catalog().engines


def key(host: str, data: dict, engine: str) -> str | None:
    """The key for ``data`` parsed as host data, as the plan does it."""
    settings, problems = parse_settings(host, data)
    assert not problems
    return api_key_for(host, settings, ENGINES[engine])


def test_no_key_unless_asked(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("LLMFLEET_SECRETS_DIR", str(tmp_path))
    assert key("gpu1", {}, "vllm") is None
    assert not list(tmp_path.iterdir())


def test_generated_once_per_host_0600_and_stable(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("LLMFLEET_SECRETS_DIR", str(tmp_path / "s"))
    first = key("gpu1", {"api_key": True}, "vllm")
    assert first and first.startswith("llmf-") and len(first) > 40
    assert key("gpu1", {"api_key": "true"}, "vllm") == first
    assert key("gpu2", {"api_key": True}, "vllm") != first
    keyfile = tmp_path / "s" / "gpu1.api-key"
    assert stat.S_IMODE(keyfile.stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "s").stat().st_mode) == 0o700


def test_site_managed_key_file(tmp_path) -> None:
    (tmp_path / "k").write_text("site-key\n")
    assert key("gpu1", {"api_key_file": str(tmp_path / "k")}, "vllm") == "site-key"
    with pytest.raises(LlmfleetError, match="gpu1: api_key_file: cannot read"):
        key("gpu1", {"api_key_file": str(tmp_path / "missing")}, "vllm")


def test_sglang_key_would_be_in_argv_so_it_is_refused(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("LLMFLEET_SECRETS_DIR", str(tmp_path))
    with pytest.raises(LlmfleetError, match="gpu1: api_key: sglang takes its key only in argv"):
        key("gpu1", {"api_key": True}, "sglang")
