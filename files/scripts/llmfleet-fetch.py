#!/usr/bin/env python3
"""Pull one pinned model snapshot into the shared Hugging Face cache on this host.

    llmfleet-fetch.py pull  --repo R --revision COMMIT --cache-dir D --marker M [--verify]
    llmfleet-fetch.py check --marker M [--hashes]

``pull`` runs with a Python that has huggingface_hub; ``check`` needs only the
standard library (it runs as a pyinfra fact with the host's python3, before
anything is installed).  The marker, written last, holds the manifest (size,
git blob id, LFS sha256 per file) taken from the Hub, so later checks need no
network and a half-finished pull is never mistaken for a finished one.

Why each step:
- the manifest first: a disk-space check needs the sizes, and verification
  needs the Hub's own checksums (sizes alone miss same-size corruption);
- snapshot_download skips complete blobs, so an interrupted pull continues
  with the files it had not finished (huggingface_hub 1.x names partial files
  ``<etag>.<random>.incomplete`` and starts them afresh; the stale partials
  of an interrupted pull are removed once a pull succeeds);
- sizes are checked always, hashes on request or when a size was wrong: a bad
  file is deleted and fetched again, once; still bad is an error;
- the token never appears in argv: huggingface_hub reads HF_TOKEN_PATH, a
  0600 file written by the role.
"""

from __future__ import annotations

import argparse
import fnmatch
import hashlib
import json
import os
import shutil
import sys
import threading
import time

CHUNK = 8 << 20


def git_blob_sha1(path: str) -> str:
    h = hashlib.sha1()
    h.update(b"blob %d\0" % os.path.getsize(path))
    with open(path, "rb") as fh:
        while chunk := fh.read(CHUNK):
            h.update(chunk)
    return h.hexdigest()


def sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(CHUNK):
            h.update(chunk)
    return h.hexdigest()


def bad_files(snapshot: str, files: dict, hashes: bool) -> dict[str, str]:
    """{path: why} for files missing, of the wrong size, or (with hashes) the wrong content."""
    bad = {}
    for name, meta in sorted(files.items()):
        path = os.path.join(snapshot, name)
        if not os.path.isfile(path):
            bad[name] = "missing"
            continue
        size = os.path.getsize(path)
        if size != meta["size"]:
            bad[name] = f"size {size} != {meta['size']}"
        elif hashes and meta.get("sha256") and sha256(path) != meta["sha256"]:
            bad[name] = "sha256 differs from the Hub's LFS checksum"
        elif (
            hashes
            and not meta.get("sha256")
            and meta.get("blob_id")
            and git_blob_sha1(path) != meta["blob_id"]
        ):
            bad[name] = "git blob id differs from the Hub's"
    return bad


def check(a: argparse.Namespace) -> int:
    try:
        with open(a.marker) as fh:
            marker = json.load(fh)
    except (OSError, ValueError):
        print(json.dumps({"ok": False, "why": "no complete pull recorded"}))
        return 0
    bad = bad_files(marker["path"], marker["files"], a.hashes)
    print(json.dumps({"ok": not bad, "bad": bad, "bytes": marker.get("bytes")}))
    return 0


def manifest(api, repo: str, commit: str, include: list[str]) -> dict[str, dict]:
    from huggingface_hub.hf_api import RepoFile

    files = {}
    for item in api.list_repo_tree(repo, revision=commit, recursive=True):
        if not isinstance(item, RepoFile):
            continue
        if include and not any(fnmatch.fnmatch(item.path, p) for p in include):
            continue
        files[item.path] = {
            "size": item.size,
            "blob_id": item.blob_id,
            "sha256": item.lfs.sha256 if item.lfs else None,
        }
    return files


class Progress(threading.Thread):
    """Writes {"done", "total", "rate", "eta"} to a JSON file every second."""

    def __init__(self, blobs: str, start_bytes: int, total: int, path: str | None) -> None:
        super().__init__(daemon=True)
        self.blobs, self.base, self.total, self.path = blobs, start_bytes, total, path
        self.stop = threading.Event()

    def on_disk(self) -> int:
        try:
            return sum(e.stat().st_size for e in os.scandir(self.blobs) if e.is_file())
        except OSError:
            return 0

    def run(self) -> None:
        start = time.monotonic()
        while not self.stop.wait(1.0):
            done = self.on_disk()
            rate = max(done - self.base, 0) / max(time.monotonic() - start, 1e-3)
            eta = (self.total - done) / rate if rate > 0 else None
            if self.path:
                tmp = self.path + ".tmp"
                with open(tmp, "w") as fh:
                    json.dump({"done": done, "total": self.total, "rate": rate, "eta": eta}, fh)
                os.replace(tmp, self.path)


def write_marker(path: str, marker: dict) -> None:
    """Written last and atomically: its presence means the snapshot is whole."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "w") as fh:
        json.dump(marker, fh)
    os.replace(tmp, path)


def serve(a: argparse.Namespace) -> int:
    """Serve this host's finished snapshot to its peers: the marker (with the Hub's
    manifest) and exactly the files it lists, nothing else of the disk."""
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
    from urllib.parse import unquote

    with open(a.marker) as fh:
        marker = json.load(fh)
    body = json.dumps(marker).encode()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path == "/marker.json":
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
                return
            name = unquote(self.path[len("/files/") :]) if self.path.startswith("/files/") else ""
            if name not in marker["files"]:
                self.send_error(404)
                return
            path = os.path.join(marker["path"], name)
            self.send_response(200)
            self.send_header("Content-Length", str(os.path.getsize(path)))
            self.end_headers()
            with open(path, "rb") as fh:
                os.sendfile(self.wfile.fileno(), fh.fileno(), 0, os.path.getsize(path))

        def log_message(self, fmt: str, *args) -> None:
            pass

    server = ThreadingHTTPServer((a.bind, a.port), Handler)
    threading.Timer(a.seconds, server.shutdown).start()  # never outlives the deploy for long
    server.serve_forever()
    return 0


def peer(a: argparse.Namespace) -> int:
    """Copy a snapshot another host of this site already has, over HTTP on the private
    network, into the same cache layout, verified against the manifest in its marker."""
    import concurrent.futures
    import urllib.request

    base = a.peer.rstrip("/")
    start = time.time()
    try:
        with urllib.request.urlopen(f"{base}/marker.json", timeout=30) as resp:
            marker = json.load(resp)
    except Exception as exc:
        print(f"llmfleet-fetch: cannot read the peer's marker at {base}: {exc}", file=sys.stderr)
        return 2
    if marker.get("revision") != a.revision or marker.get("repo") != a.repo:
        print(
            f"llmfleet-fetch: peer {base} has {marker.get('repo')}@{marker.get('revision')}, "
            f"not {a.repo}@{a.revision}",
            file=sys.stderr,
        )
        return 2
    files = marker["files"]
    repo_dir = os.path.join(a.cache_dir, "models--" + a.repo.replace("/", "--"))
    blobs = os.path.join(repo_dir, "blobs")
    snap = os.path.join(repo_dir, "snapshots", a.revision)
    os.makedirs(blobs, exist_ok=True)
    total = sum(m["size"] for m in files.values())
    free = shutil.disk_usage(a.cache_dir).free
    if total > free:
        print(
            f"llmfleet-fetch: needs {total / 1e9:.1f} GB in {a.cache_dir}, "
            f"only {free / 1e9:.1f} GB free",
            file=sys.stderr,
        )
        return 3
    progress = Progress(blobs, 0, total, a.progress)
    progress.start()

    def one(name: str) -> str | None:
        meta = files[name]
        blob = os.path.join(blobs, meta.get("sha256") or meta["blob_id"])
        if not (os.path.isfile(blob) and os.path.getsize(blob) == meta["size"]):
            tmp = blob + ".peer.incomplete"
            with (
                urllib.request.urlopen(
                    f"{base}/files/{urllib.request.quote(name)}", timeout=60
                ) as resp,
                open(tmp, "wb") as out,
            ):
                shutil.copyfileobj(resp, out, CHUNK)
            os.replace(tmp, blob)
        link = os.path.join(snap, name)
        os.makedirs(os.path.dirname(link), exist_ok=True)
        if not os.path.lexists(link):
            os.symlink(os.path.relpath(blob, os.path.dirname(link)), link)
        bad = bad_files(snap, {name: meta}, True)
        return f"{name}: {bad[name]}" if bad else None

    try:
        with concurrent.futures.ThreadPoolExecutor(a.workers) as pool:
            errors = [e for e in pool.map(one, sorted(files)) if e]
    except Exception as exc:
        print(
            f"llmfleet-fetch: copy from peer {base}: {type(exc).__name__}: {exc}", file=sys.stderr
        )
        return 1
    finally:
        progress.stop.set()
    if errors:
        print(f"llmfleet-fetch: from peer {base}: {errors}", file=sys.stderr)
        return 4
    write_marker(
        a.marker,
        {
            **marker,
            "path": snap,
            "verified": True,
            "refetched": [],
            "from_peer": base,
            "seconds": round(time.time() - start, 1),
        },
    )
    return 0


def pull(a: argparse.Namespace) -> int:
    from huggingface_hub import HfApi, hf_hub_download, snapshot_download

    endpoint = os.environ.get("HF_ENDPOINT", "the Hugging Face Hub")
    where = f"{a.repo}@{a.revision[:12]} from {endpoint}"
    start = time.time()
    try:
        files = manifest(HfApi(), a.repo, a.revision, a.include)
    except Exception as exc:  # the message is what the operator needs; keep it whole
        print(f"llmfleet-fetch: cannot list {where}: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 2
    total = sum(m["size"] for m in files.values())
    repo_dir = os.path.join(a.cache_dir, "models--" + a.repo.replace("/", "--"))
    blobs = os.path.join(repo_dir, "blobs")
    os.makedirs(a.cache_dir, exist_ok=True)
    have = Progress(blobs, 0, total, None).on_disk()
    free = shutil.disk_usage(a.cache_dir).free
    if total - have > free:
        print(
            f"llmfleet-fetch: {where} needs {(total - have) / 1e9:.1f} GB more in "
            f"{a.cache_dir}, only {free / 1e9:.1f} GB free",
            file=sys.stderr,
        )
        return 3
    progress = Progress(blobs, have, total, a.progress)
    progress.start()
    try:
        path = snapshot_download(
            repo_id=a.repo,
            revision=a.revision,
            cache_dir=a.cache_dir,
            max_workers=a.workers,
            allow_patterns=a.include or None,
        )
        bad = bad_files(path, files, a.verify)
        if bad and not a.verify:  # a wrong size: look closer at everything
            bad = bad_files(path, files, True)
        for name in bad:
            print(f"llmfleet-fetch: {name}: {bad[name]}; fetching it again", file=sys.stderr)
            target = os.path.realpath(os.path.join(path, name))
            for p in (target, os.path.join(path, name)):
                if os.path.lexists(p):
                    os.remove(p)
            hf_hub_download(
                a.repo, name, revision=a.revision, cache_dir=a.cache_dir, force_download=True
            )
        still = bad_files(path, files, True) if bad else {}
    except Exception as exc:
        print(f"llmfleet-fetch: {where}: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    finally:
        progress.stop.set()
    stale = [
        e.path
        for e in os.scandir(blobs)
        if e.name.endswith(".incomplete") and e.stat().st_mtime < start
    ]
    for leftover in stale:  # partial files of an interrupted earlier pull (not resumable)
        os.remove(leftover)
    if still:
        print(
            f"llmfleet-fetch: {where}: still corrupt after a second fetch: {still}", file=sys.stderr
        )
        return 4
    marker = {
        "repo": a.repo,
        "revision": a.revision,
        "path": path,
        "bytes": total,
        "files": files,
        "verified": bool(a.verify or bad),
        "refetched": sorted(bad),
        "seconds": round(time.time() - start, 1),
    }
    write_marker(a.marker, marker)
    print(json.dumps({k: marker[k] for k in ("path", "bytes", "seconds", "refetched")}))
    return 0


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    pl = sub.add_parser("pull", help="download (resuming), verify, write the marker")
    pl.add_argument("--repo", required=True)
    pl.add_argument("--revision", required=True, help="a commit hash resolved on the control node")
    pl.add_argument("--cache-dir", required=True)
    pl.add_argument("--marker", required=True)
    pl.add_argument("--workers", type=int, default=8)
    pl.add_argument("--include", action="append", default=[], help="only files matching")
    pl.add_argument("--verify", action="store_true", help="check every file's checksum too")
    pl.add_argument("--progress", help="write progress JSON here every second")
    pe = sub.add_parser("peer", help="copy the snapshot from a peer host (site fan-out)")
    pe.add_argument("--peer", required=True, help="http://PEER:PORT of `serve` on that host")
    pe.add_argument("--repo", required=True)
    pe.add_argument("--revision", required=True)
    pe.add_argument("--cache-dir", required=True)
    pe.add_argument("--marker", required=True)
    pe.add_argument("--workers", type=int, default=8)
    pe.add_argument("--progress")
    sv = sub.add_parser("serve", help="serve this host's snapshot to peers for a while")
    sv.add_argument("--marker", required=True)
    sv.add_argument("--bind", required=True)
    sv.add_argument("--port", type=int, default=8099)
    sv.add_argument("--seconds", type=int, default=3600)
    ck = sub.add_parser("check", help="is the recorded snapshot still whole? (stdlib only)")
    ck.add_argument("--marker", required=True)
    ck.add_argument("--hashes", action="store_true")
    argv = sys.argv[1:]
    if argv and argv[0].startswith("--") and argv[0] not in ("--help", "-h"):
        argv = ["pull", *argv]  # pull is the default command
    a = p.parse_args(argv)
    return {"pull": pull, "check": check, "peer": peer, "serve": serve}[a.cmd](a)


if __name__ == "__main__":
    sys.exit(main())
