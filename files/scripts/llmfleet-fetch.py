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
- over plain HTTP (a site mirror, a peer, the lab Hub) the bodies go socket ->
  file with splice(2) (``--transfer direct``): huggingface_hub's own loop
  costs about 3x the CPU and was the limit in the benchmark; over HTTPS and
  through proxies huggingface_hub downloads (``snapshot_download``), since it
  knows the Hub's redirects and Xet storage;
- complete blobs are skipped, so an interrupted pull continues with the files
  it had not finished; the direct path also continues a partial file with a
  Range request (and then checks that file's checksum); huggingface_hub's
  partials (``<etag>.<random>.incomplete``) start afresh and are removed once
  a pull succeeds;
- sizes are checked always, hashes on request or when a size was wrong: a bad
  file is deleted and fetched again, once; still bad is an error;
- the token never appears in argv: huggingface_hub reads HF_TOKEN_PATH, a
  0600 file written by the role.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import fcntl
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
            size = os.path.getsize(path)
            start = 0  # "Range: bytes=N-" continues a copy a dropped connection cut short
            wanted = (self.headers.get("Range") or "").removeprefix("bytes=")
            if wanted.endswith("-") and wanted[:-1].isdigit() and int(wanted[:-1]) < size:
                start = int(wanted[:-1])
            self.send_response(206 if start else 200)
            self.send_header("Content-Length", str(size - start))
            if start:
                self.send_header("Content-Range", f"bytes {start}-{size - 1}/{size}")
            self.end_headers()
            with open(path, "rb") as fh:
                os.sendfile(self.wfile.fileno(), fh.fileno(), start, size - start)

        def log_message(self, fmt: str, *args) -> None:
            pass

    server = ThreadingHTTPServer((a.bind, a.port), Handler)
    threading.Timer(a.seconds, server.shutdown).start()  # never outlives the deploy for long
    server.serve_forever()
    return 0


# --------------------------------------------------------------------------
# Direct transfer over plain HTTP (a site mirror, a peer, the lab Hub)
# --------------------------------------------------------------------------

PARTIAL = ".llmfleet.incomplete"
TIMEOUT = float(os.environ.get("HF_HUB_DOWNLOAD_TIMEOUT") or 60)
F_SETPIPE_SZ = 1031


class NotDirect(Exception):
    """The direct path does not take this URL (HTTPS, a proxy, a redirect off plain
    HTTP); huggingface_hub's own download does."""


def direct_ok(url: str) -> bool:
    """Plain HTTP with no proxy in the way: the body can go socket -> file in the kernel."""
    from urllib.parse import urlsplit
    from urllib.request import getproxies, proxy_bypass

    u = urlsplit(url)
    return u.scheme == "http" and ("http" not in getproxies() or bool(proxy_bypass(u.hostname)))


def _open(url: str, headers: dict[str, str]):
    """GET ``url`` with http.client, following plain-HTTP redirects (the token is
    dropped when the host changes).  Returns the socket too: http.client lets go
    of it when the server says it will close, but the response still reads it."""
    import http.client
    from urllib.parse import urlsplit

    def connect(url: str):
        if not direct_ok(url):
            raise NotDirect(url)
        u = urlsplit(url)
        return http.client.HTTPConnection(u.hostname, u.port or 80, timeout=TIMEOUT)

    return open_following(url, headers, connect)


def open_following(url: str, headers: dict[str, str], connect):
    """GET ``url``, following up to 5 redirects; ``connect(url)`` makes each hop's
    connection (and raises to refuse a hop).  The token is dropped when the host
    changes, as huggingface_hub does.  Returns (conn, sock, resp); the swarm script
    (``llmfleet-swarm.py``) uses this too, with its own ``connect``."""
    from urllib.parse import urljoin, urlsplit

    for _hop in range(5):
        u = urlsplit(url)
        conn = connect(url)
        conn.request("GET", u.path + (f"?{u.query}" if u.query else ""), headers=headers)
        sock = conn.sock
        resp = conn.getresponse()
        if resp.status not in (301, 302, 303, 307, 308):
            return conn, sock, resp
        target = urljoin(url, resp.getheader("Location") or "")
        resp.close()
        conn.close()
        if urlsplit(target).netloc != u.netloc:
            headers = {k: v for k, v in headers.items() if k.lower() != "authorization"}
        url = target
    raise OSError(f"too many redirects from {url}")


def _splice(sock, fd: int, n: int) -> None:
    """Move ``n`` body bytes socket -> pipe -> file with splice(2): one copy, no
    Python buffers (about 3x less CPU than a read/write loop on this path)."""
    import select

    rp, wp = os.pipe()
    try:
        with contextlib.suppress(OSError):  # a bigger pipe: fewer syscalls
            fcntl.fcntl(wp, F_SETPIPE_SZ, 1 << 20)
        while n:
            try:
                k = os.splice(sock.fileno(), wp, min(n, 1 << 20))
            except BlockingIOError:  # a socket with a timeout is non-blocking underneath
                if not select.select([sock], [], [], TIMEOUT)[0]:
                    raise TimeoutError(f"no data for {TIMEOUT:.0f} s") from None
                continue
            if k == 0:
                raise OSError(f"connection closed with {n} bytes still to come")
            left = k
            while left:
                left -= os.splice(rp, fd, left)
            n -= k
    finally:
        os.close(rp)
        os.close(wp)


def _copy_body(sock, resp, fd: int, n: int) -> None:
    """The ``n``-byte response body to ``fd``: with a plain Content-Length body, what
    http.client already buffered, then the rest with splice(2) where the kernel
    allows it; else (chunked, as olah sends, or no splice) a readinto loop."""
    raw = not resp.chunked and resp.length == n
    if raw and n and (head := resp.fp.peek(1)[:n]):
        os.write(fd, resp.fp.read(len(head)))
        n -= len(head)
    if raw and n and hasattr(os, "splice"):
        try:
            _splice(sock, fd, n)
            return
        except OSError as exc:  # EINVAL & co.: this file system or socket can't splice
            if exc.errno not in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
                raise
    buf = memoryview(bytearray(CHUNK))
    while n:
        k = resp.readinto(buf[: min(n, CHUNK)])
        if not k:
            raise OSError(f"connection closed with {n} bytes still to come")
        os.write(fd, buf[:k])
        n -= k
    if not raw and resp.read(1):
        raise OSError("the server sent more bytes than the Hub's manifest lists")


def fetch_file(url: str, blob: str, size: int, headers: dict[str, str]) -> bool:
    """Download ``url`` into ``blob`` (written as ``blob + PARTIAL``, then renamed),
    continuing a partial file from an interrupted run with a Range request.
    Returns whether it resumed (a resumed file gets its checksum checked)."""
    part = blob + PARTIAL
    have = os.path.getsize(part) if os.path.isfile(part) else 0
    if have >= size:
        have = 0
    req = {**headers, "Range": f"bytes={have}-"} if have else dict(headers)
    conn, sock, resp = _open(url, req)
    try:
        if resp.status == 200:
            have = 0  # the server ignored the Range: start over
        elif not (resp.status == 206 and have):
            why = resp.getheader("X-Error-Message") or resp.reason
            raise OSError(f"HTTP {resp.status} for {url}: {why}")
        length = resp.getheader("Content-Length")
        n = size - have if length is None else int(length)
        if have + n != size:
            raise OSError(f"{url} offers {have + n} bytes, the Hub's manifest says {size}")
        fd = os.open(part, os.O_WRONLY | os.O_CREAT, 0o644)
        try:
            os.ftruncate(fd, have)
            os.lseek(fd, have, os.SEEK_SET)
            _copy_body(sock, resp, fd, n)
        finally:
            os.close(fd)
    finally:
        resp.close()
        conn.close()
        sock.close()
    os.replace(part, blob)
    return bool(have)


def fill_snapshot(
    files: dict, repo_dir: str, revision: str, workers: int, url_of, headers: dict[str, str]
) -> tuple[str, list[str], list[str]]:
    """Every manifest file into the Hugging Face cache layout huggingface_hub
    itself uses (``blobs/<etag>`` + ``snapshots/<rev>/<name>`` links), so the
    engine and ``snapshot_download`` read it as their own.  Complete blobs are
    skipped.  Returns the snapshot path, the files resumed from a partial file,
    and the files whose blob was there with the wrong size (fetched again)."""
    import concurrent.futures

    blobs = os.path.join(repo_dir, "blobs")
    snap = os.path.join(repo_dir, "snapshots", revision)
    os.makedirs(blobs, exist_ok=True)

    def one(name: str) -> str | None:
        meta = files[name]
        blob = os.path.join(blobs, meta.get("sha256") or meta["blob_id"])
        what = None
        if not (os.path.isfile(blob) and os.path.getsize(blob) == meta["size"]):
            what = "repaired" if os.path.isfile(blob) else None
            what = "resumed" if fetch_file(url_of(name), blob, meta["size"], headers) else what
        link = os.path.join(snap, name)
        os.makedirs(os.path.dirname(link), exist_ok=True)
        if not os.path.lexists(link):
            os.symlink(os.path.relpath(blob, os.path.dirname(link)), link)
        return what

    names = sorted(files, key=lambda f: -files[f]["size"])  # big ones first
    with concurrent.futures.ThreadPoolExecutor(workers) as pool:
        done = dict(zip(names, pool.map(one, names), strict=True))
    return (
        snap,
        sorted(n for n, w in done.items() if w == "resumed"),
        sorted(n for n, w in done.items() if w == "repaired"),
    )


def repo_cache_dir(cache_dir: str, repo: str) -> str:
    return os.path.join(cache_dir, "models--" + repo.replace("/", "--"))


def space_problem(cache_dir: str, need: int, where: str) -> str | None:
    """Refuse before downloading what cannot fit (``need``: what is not there yet)."""
    os.makedirs(cache_dir, exist_ok=True)
    free = shutil.disk_usage(cache_dir).free
    if need > free:
        return (
            f"llmfleet-fetch: {where} needs {need / 1e9:.1f} GB more in "
            f"{cache_dir}, only {free / 1e9:.1f} GB free"
        )
    return None


def peer(a: argparse.Namespace) -> int:
    """Copy a snapshot another host of this site already has, over HTTP on the private
    network, into the same cache layout, checked against the manifest in its marker."""
    import urllib.request
    from urllib.parse import quote

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
    repo_dir = repo_cache_dir(a.cache_dir, a.repo)
    blobs = os.path.join(repo_dir, "blobs")
    total = sum(m["size"] for m in files.values())
    have = Progress(blobs, 0, total, None).on_disk()
    if problem := space_problem(a.cache_dir, total - have, f"the copy from {base}"):
        print(problem, file=sys.stderr)
        return 3
    progress = Progress(blobs, 0, total, a.progress)
    progress.start()
    try:
        snap, resumed, _repaired = fill_snapshot(
            files, repo_dir, a.revision, a.workers, lambda n: f"{base}/files/{quote(n)}", {}
        )
        bad = bad_files(snap, files, a.verify)
        bad.update(bad_files(snap, {n: files[n] for n in resumed}, True))
    except Exception as exc:
        print(
            f"llmfleet-fetch: copy from peer {base}: {type(exc).__name__}: {exc}", file=sys.stderr
        )
        return 1
    finally:
        progress.stop.set()
    if bad:
        print(f"llmfleet-fetch: from peer {base}: {bad}", file=sys.stderr)
        return 4
    write_marker(
        a.marker,
        {
            **marker,
            "path": snap,
            "verified": bool(a.verify),
            "refetched": [],
            "resumed": resumed,
            "from_peer": base,
            "seconds": round(time.time() - start, 1),
        },
    )
    return 0


def pull(a: argparse.Namespace) -> int:
    from huggingface_hub import HfApi, constants, hf_hub_download, hf_hub_url, snapshot_download
    from huggingface_hub.utils import build_hf_headers

    endpoint = constants.ENDPOINT
    where = f"{a.repo}@{a.revision[:12]} from {endpoint}"
    start = time.time()
    try:
        files = manifest(HfApi(), a.repo, a.revision, a.include)
    except Exception as exc:  # the message is what the operator needs; keep it whole
        print(f"llmfleet-fetch: cannot list {where}: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 2
    total = sum(m["size"] for m in files.values())
    repo_dir = repo_cache_dir(a.cache_dir, a.repo)
    blobs = os.path.join(repo_dir, "blobs")
    have = Progress(blobs, 0, total, None).on_disk()
    if problem := space_problem(a.cache_dir, total - have, where):
        print(problem, file=sys.stderr)
        return 3
    direct = a.transfer == "direct" or (a.transfer == "auto" and direct_ok(endpoint))
    headers = build_hf_headers()  # the token (HF_TOKEN_PATH) and user agent, as hf sends them

    def url_of(name: str) -> str:
        return hf_hub_url(a.repo, name, revision=a.revision)

    progress = Progress(blobs, have, total, a.progress)
    progress.start()
    try:
        resumed: list[str] = []
        repaired: list[str] = []  # a blob of the wrong size found and fetched again
        if direct:
            path, resumed, repaired = fill_snapshot(
                files, repo_dir, a.revision, a.workers, url_of, headers
            )
        else:
            path = snapshot_download(
                repo_id=a.repo,
                revision=a.revision,
                cache_dir=a.cache_dir,
                max_workers=a.workers,
                allow_patterns=a.include or None,
            )
        bad = bad_files(path, files, a.verify)
        bad.update(bad_files(path, {n: files[n] for n in resumed}, True))
        if (bad or repaired) and not a.verify:  # a wrong size: look closer at everything
            bad = bad_files(path, files, True)
        for name in bad:
            print(f"llmfleet-fetch: {name}: {bad[name]}; fetching it again", file=sys.stderr)
            target = os.path.realpath(os.path.join(path, name))
            for p in (target, target + PARTIAL, os.path.join(path, name)):
                if os.path.lexists(p):
                    os.remove(p)
            if direct:
                fill_snapshot({name: files[name]}, repo_dir, a.revision, 1, url_of, headers)
            else:
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
    for leftover in stale:  # partial files of an interrupted huggingface_hub pull
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
        "verified": bool(a.verify or bad or repaired),
        "refetched": sorted({*bad, *repaired}),
        "resumed": resumed,
        "transfer": "direct" if direct else "huggingface_hub",
        "seconds": round(time.time() - start, 1),
    }
    write_marker(a.marker, marker)
    print(json.dumps({k: marker[k] for k in ("path", "bytes", "seconds", "refetched", "resumed")}))
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
    pl.add_argument(
        "--transfer",
        choices=("auto", "direct", "huggingface_hub"),
        default="auto",
        help="direct: splice(2) over plain HTTP with Range resume; auto: direct when the "
        "endpoint is plain HTTP without a proxy, else huggingface_hub",
    )
    pe = sub.add_parser("peer", help="copy the snapshot from a peer host (site fan-out)")
    pe.add_argument("--peer", required=True, help="http://PEER:PORT of `serve` on that host")
    pe.add_argument("--repo", required=True)
    pe.add_argument("--revision", required=True)
    pe.add_argument("--cache-dir", required=True)
    pe.add_argument("--marker", required=True)
    pe.add_argument("--workers", type=int, default=8)
    pe.add_argument("--progress")
    pe.add_argument("--verify", action="store_true", help="check every file's checksum too")
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
