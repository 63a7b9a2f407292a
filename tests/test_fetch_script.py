"""``files/scripts/llmfleet-fetch.py`` against a real HTTP Hub stand-in.

The script runs as it runs on hosts (a subprocess with HF_ENDPOINT set), and
pulls a small git repo served by ``llmfleet.lab.statichub``, which records the
requests it answers; so resumption with Range, the fallback when a server
ignores Range, checksum repair of a bad partial file, the cache layout the
engine reads, and the peer copy are all checked on real files, without root
or the lab.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from llmfleet.lab import hub as labhub
from llmfleet.lab.statichub import StaticHub

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "files" / "scripts" / "llmfleet-fetch.py"
REPO = "llmfleet-test/fetch"
SHARD = "model-00001-of-00002.safetensors"


def _write(work: Path) -> None:
    (work / "config.json").write_text('{"model_type": "test"}\n')
    for i, size in ((1, 3_000_000), (2, 2_000_001)):
        (work / f"model-0000{i}-of-00002.safetensors").write_bytes(os.urandom(size))
    (work / "sub").mkdir()
    (work / "sub" / "extra.bin").write_bytes(os.urandom(4096))


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> dict:
    mirrors = tmp_path_factory.mktemp("mirrors")
    refs = labhub.build_repo_from_files(mirrors, REPO, _write, "test weights")
    work = labhub.repo_path(mirrors, REPO)
    return {"work": work, "commit": refs["main"]}


@pytest.fixture
def hub(repo: dict) -> Iterator[StaticHub]:
    with StaticHub(repo["work"], REPO, repo["commit"]) as server:
        yield server


def pull(hub: StaticHub, cache: Path, *extra: str) -> tuple[subprocess.CompletedProcess, dict]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
    env.update(HF_ENDPOINT=hub.url, HF_HOME=str(cache / "home"), HF_HUB_DISABLE_TELEMETRY="1")
    marker = cache / "marker.json"
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "pull", "--repo", REPO, "--revision", hub.commit]
        + ["--cache-dir", str(cache / "hf"), "--marker", str(marker), *extra],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    return proc, json.loads(marker.read_text())


def snapshot(cache: Path, commit: str) -> Path:
    return cache / "hf" / f"models--{REPO.replace('/', '--')}" / "snapshots" / commit


def layout(snap: Path) -> dict[str, tuple[str, str]]:
    """{file: (link target, sha256 of the content)} of a snapshot."""
    out = {}
    for path in sorted(p for p in snap.rglob("*") if p.is_symlink()):
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        out[str(path.relative_to(snap))] = (os.readlink(path), digest)
    return out


def partial_of(hub: StaticHub, cache: Path, name: str) -> Path:
    blobs = cache / "hf" / f"models--{REPO.replace('/', '--')}" / "blobs"
    blobs.mkdir(parents=True, exist_ok=True)
    return blobs / (hub.files[name]["oid"] + ".llmfleet.incomplete")


def source(repo: dict, name: str) -> bytes:
    return (repo["work"] / name).read_bytes()


def resolve_gets(hub: StaticHub) -> list[tuple[str, str]]:
    gets = [(p, r) for m, p, r in hub.requests if m == "GET" and "/resolve/" in p]
    return [(p.rsplit("/", 1)[-1], r) for p, r in gets]


def test_direct_pull_gives_the_same_cache_as_huggingface_hub(
    hub: StaticHub, repo: dict, tmp_path: Path
) -> None:
    _, direct = pull(hub, tmp_path / "a")  # auto: plain HTTP -> direct
    _, hfhub = pull(hub, tmp_path / "b", "--transfer", "huggingface_hub")
    assert direct["transfer"] == "direct" and hfhub["transfer"] == "huggingface_hub"
    mine = layout(snapshot(tmp_path / "a", hub.commit))
    theirs = layout(snapshot(tmp_path / "b", hub.commit))
    assert mine == theirs and set(mine) == set(hub.files)
    for name, (_link, digest) in mine.items():
        assert digest == hashlib.sha256(source(repo, name)).hexdigest(), name
    assert direct["files"][SHARD] == {
        "size": 3_000_000,
        "blob_id": hub.files[SHARD]["oid"],
        "sha256": None,
    }


def test_second_pull_downloads_nothing(hub: StaticHub, tmp_path: Path) -> None:
    pull(hub, tmp_path)
    hub.requests.clear()
    _, marker = pull(hub, tmp_path)
    assert resolve_gets(hub) == [] and marker["resumed"] == [] and marker["refetched"] == []


def test_partial_file_resumes_with_a_range_request(
    hub: StaticHub, repo: dict, tmp_path: Path
) -> None:
    partial_of(hub, tmp_path, SHARD).write_bytes(source(repo, SHARD)[:1_000_000])
    _, marker = pull(hub, tmp_path)
    assert (SHARD, "bytes=1000000-") in resolve_gets(hub)
    assert marker["resumed"] == [SHARD] and marker["refetched"] == []
    assert (snapshot(tmp_path, hub.commit) / SHARD).read_bytes() == source(repo, SHARD)
    assert not list(partial_of(hub, tmp_path, SHARD).parent.glob("*.incomplete"))


def test_bad_partial_is_caught_by_its_checksum_and_fetched_again(
    hub: StaticHub, repo: dict, tmp_path: Path
) -> None:
    partial_of(hub, tmp_path, SHARD).write_bytes(b"\0" * 1_000_000)  # not the shard's bytes
    proc, marker = pull(hub, tmp_path)
    assert f"{SHARD}: git blob id differs" in proc.stderr and "fetching it again" in proc.stderr
    assert marker["refetched"] == [SHARD] and marker["verified"] is True
    assert (snapshot(tmp_path, hub.commit) / SHARD).read_bytes() == source(repo, SHARD)
    assert [r for n, r in resolve_gets(hub) if n == SHARD] == ["bytes=1000000-", ""]


def test_server_ignoring_range_restarts_the_file(
    hub: StaticHub, repo: dict, tmp_path: Path
) -> None:
    hub.ignore_range = True
    partial_of(hub, tmp_path, SHARD).write_bytes(source(repo, SHARD)[:1_000_000])
    _, marker = pull(hub, tmp_path)
    assert marker["resumed"] == [] and marker["refetched"] == []
    assert (snapshot(tmp_path, hub.commit) / SHARD).read_bytes() == source(repo, SHARD)


def test_chunked_bodies_are_decoded_and_resumed(hub: StaticHub, repo: dict, tmp_path: Path) -> None:
    """olah sends file bodies chunked, without a Content-Length: no splice there."""
    hub.chunked = True
    partial_of(hub, tmp_path, SHARD).write_bytes(source(repo, SHARD)[:1_000_000])
    _, marker = pull(hub, tmp_path)
    assert marker["transfer"] == "direct" and marker["resumed"] == [SHARD]
    got = {name: digest for name, (_link, digest) in layout(snapshot(tmp_path, hub.commit)).items()}
    assert got == {name: sha(source(repo, name)) for name in hub.files}


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_missing_revision_is_a_clear_error(hub: StaticHub, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "pull", "--repo", REPO, "--revision", "0" * 40]
        + ["--cache-dir", str(tmp_path / "hf"), "--marker", str(tmp_path / "m.json")],
        env={**env, "HF_ENDPOINT": hub.url, "HF_HOME": str(tmp_path / "home")},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2, proc.stderr
    assert f"cannot list {REPO}@000000000000 from {hub.url}" in proc.stderr
    assert not (tmp_path / "m.json").exists()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_peer_copy_matches_the_source_snapshot(hub: StaticHub, repo: dict, tmp_path: Path) -> None:
    _, marker = pull(hub, tmp_path / "src")
    port = _free_port()
    server = subprocess.Popen(
        [sys.executable, str(SCRIPT), "serve", "--marker", str(tmp_path / "src" / "marker.json")]
        + ["--bind", "127.0.0.1", "--port", str(port), "--seconds", "60"]
    )
    try:
        for _ in range(100):
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.1)
        dest = tmp_path / "dst"
        partial_of(hub, dest, SHARD).write_bytes(source(repo, SHARD)[:1_000_000])
        proc = subprocess.run(
            [sys.executable, str(SCRIPT), "peer", "--peer", f"http://127.0.0.1:{port}"]
            + ["--repo", REPO, "--revision", hub.commit, "--cache-dir", str(dest / "hf")]
            + ["--marker", str(dest / "marker.json"), "--verify"],
            capture_output=True,
            text=True,
            timeout=60,
        )
    finally:
        server.kill()
        server.wait()
    assert proc.returncode == 0, proc.stderr
    copied = json.loads((dest / "marker.json").read_text())
    assert copied["files"] == marker["files"] and copied["verified"] is True
    assert copied["resumed"] == [SHARD]  # the peer honoured the Range request
    assert layout(snapshot(dest, hub.commit)) == layout(snapshot(tmp_path / "src", hub.commit))


def test_redirects_keep_the_token_on_one_host_and_drop_it_across_hosts() -> None:
    """``open_following`` (the fetch and swarm scripts' one redirect loop)."""
    import http.client
    import http.server
    import importlib.util
    import threading

    spec = importlib.util.spec_from_file_location("llmfleet_fetch", SCRIPT)
    fetch = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(fetch)
    seen: list[tuple[str, str | None]] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            host = self.headers["Host"]
            seen.append((f"{host}{self.path}", self.headers.get("Authorization")))
            if self.path == "/a":  # same host
                self.send_response(302)
                self.send_header("Location", "/b")
            elif self.path == "/b":  # another host name for the same server
                self.send_response(307)
                port = self.server.server_address[1]
                self.send_header("Location", f"http://localhost:{port}/c")
            else:
                self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args) -> None:
            pass

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    port = srv.server_address[1]
    try:

        def connect(url: str):
            from urllib.parse import urlsplit

            u = urlsplit(url)
            return http.client.HTTPConnection(u.hostname, u.port, timeout=10)

        conn, _, resp = fetch.open_following(
            f"http://127.0.0.1:{port}/a", {"Authorization": "Bearer t"}, connect
        )
        assert resp.status == 200
        conn.close()
    finally:
        srv.shutdown()
    assert seen == [
        (f"127.0.0.1:{port}/a", "Bearer t"),
        (f"127.0.0.1:{port}/b", "Bearer t"),
        (f"localhost:{port}/c", None),
    ]
