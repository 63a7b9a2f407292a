#!/usr/bin/env python3
"""Swarm pull: every host of a site serves what it already holds to the others.

    llmfleet-swarm.py --plan PLAN.json --repo R --revision COMMIT --cache-dir D \
        --marker M [--workers 8] [--progress P] [--verify]

The plan (``llmfleet.swarmplan``, written by the weights role on the control
node) names the members (host -> http://ADDRESS:PORT), this host, the
*origins* (the members that fetch files from the Hub or mirror first; none
when a member already holds the snapshot) and the piece size.  Every origin
computes the same assignment from the Hub's manifest: each file goes to the
origin with the fewest bytes assigned so far, biggest files first.  An origin
streams its files from upstream in one GET each (Range resume; any upstream,
olah too, whether or not it honours Range mid-file); every other byte comes
from peers, piece by piece, so upload capacity grows with the fleet and the
Hub sends one copy.

Why each step:
- pieces (default 16 MiB) are what peers exchange: a piece is served as soon
  as it is verified, so a file is relayed while its origin still downloads it;
- every piece is hashed (sha256) by the host that got it from upstream, read
  back from disk; a peer serves the hash it recorded then with the piece, and
  the receiver checks the bytes it wrote against it: a piece a peer's disk or
  memory corrupted since is caught, that peer is not asked for it again, and
  the piece comes from another peer or, if none, from upstream;
- every file is then checked whole against the Hub's own checksum (LFS
  sha256 or git blob id) before it is renamed into place, as the plain pull
  does; a file that fails it is fetched again from upstream by this host;
- a member that stops answering for ``dead_after_s`` is dead: the files it
  was first source of go to the next live origin in the plan's order, so a
  host killed mid-swarm stops nobody else;
- verified pieces are logged beside the partial file (``<blob>.llmfleet.pieces``),
  so an interrupted swarm resumes with what it had;
- a finished host keeps serving until every live member is done (or
  ``linger_s``), then exits: nothing stays running;
- the token is read by huggingface_hub from HF_TOKEN_PATH, never argv.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import http.client
import importlib.util
import json
import os
import random
import sys
import threading
import time
from pathlib import Path
from urllib.parse import quote, unquote, urlsplit

HERE = Path(__file__).resolve().parent


def _load_fetch():
    """The fetch script beside this one: its manifest, marker, cache layout and HTTP
    body copy are reused as they are (one implementation of each guarantee)."""
    spec = importlib.util.spec_from_file_location("llmfleet_fetch", HERE / "llmfleet-fetch.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


fetch = _load_fetch()
PIECES = ".llmfleet.pieces"  # beside the partial blob: "<piece> <sha256>" per verified piece
HASH_HEADER = "X-Llmfleet-Piece-Sha256"
READ = 8 << 20


def log(msg: str) -> None:
    print(f"llmfleet-swarm: {msg}", file=sys.stderr, flush=True)


def hash_range(path: str, start: int, n: int) -> str:
    h = hashlib.sha256()
    fd = os.open(path, os.O_RDONLY)
    try:
        while n:
            chunk = os.pread(fd, min(n, READ), start)
            if not chunk:
                raise OSError(f"{path}: short read at {start}")
            h.update(chunk)
            start += len(chunk)
            n -= len(chunk)
    finally:
        os.close(fd)
    return h.hexdigest()


def to_ranges(pieces: set[int]) -> list[list[int]]:
    """{0,1,2,5} -> [[0,3],[5,6]]: what a host holds, compactly (half-open ranges)."""
    out: list[list[int]] = []
    for k in sorted(pieces):
        if out and out[-1][1] == k:
            out[-1][1] = k + 1
        else:
            out.append([k, k + 1])
    return out


def in_ranges(ranges: list[list[int]], k: int) -> bool:
    return any(a <= k < b for a, b in ranges)


# --------------------------------------------------------------------------
# What this host holds
# --------------------------------------------------------------------------


class FileState:
    """One manifest file: its pieces, which are verified, and their hashes."""

    def __init__(self, name: str, meta: dict, blobs: str, piece: int) -> None:
        self.name, self.meta, self.size = name, meta, meta["size"]
        self.blob = os.path.join(blobs, meta.get("sha256") or meta["blob_id"])
        self.part = self.blob + fetch.PARTIAL
        self.piece = piece
        self.count = max(1, -(-self.size // piece))
        self.have: set[int] = set()
        self.hashes: dict[int, str] = {}
        self.complete = False  # checked whole against the Hub and renamed into place
        self.streaming = False  # an upstream stream of this file is running here
        self.queued = False  # waiting for the whole-file check
        self.failures = 0  # upstream attempts for this file that failed in a row

    def span(self, k: int) -> tuple[int, int]:
        start = k * self.piece
        return start, max(0, min(self.piece, self.size - start))

    def path(self) -> str:
        return self.blob if self.complete else self.part

    def ready(self) -> bool:
        """Checked against the Hub and every piece hash known: done here."""
        return self.complete and len(self.hashes) == self.count

    def served(self) -> list[list[int]] | str:
        """What peers may ask for: pieces verified here whose hash is known."""
        return "all" if self.ready() else to_ranges({k for k in self.have if k in self.hashes})


class Store:
    """Every file of the snapshot on this host, shared by the server, the fetchers and
    the checker (one lock: the work under it is bookkeeping only)."""

    def __init__(self, files: dict, repo_dir: str, revision: str, piece: int) -> None:
        self.repo_dir, self.revision, self.piece = repo_dir, revision, piece
        self.blobs = os.path.join(repo_dir, "blobs")
        self.snap = os.path.join(repo_dir, "snapshots", revision)
        os.makedirs(self.blobs, exist_ok=True)
        self.files = {n: FileState(n, m, self.blobs, piece) for n, m in files.items()}
        self.lock = threading.Lock()
        self.changed = threading.Condition(self.lock)
        self.resumed: list[str] = []
        self.failed: str | None = None

    def load(self, known: dict[str, list[str]] | None) -> list[FileState]:
        """What is already on disk: complete blobs (with the piece hashes a marker
        recorded, else queued to be hashed and checked) and logged partial pieces.
        Returns the complete files that still need that check."""
        unchecked = []
        for fs in self.files.values():
            if os.path.isfile(fs.blob) and os.path.getsize(fs.blob) == fs.size:
                fs.complete, fs.have = True, set(range(fs.count))
                hashes = (known or {}).get(fs.name)
                if hashes and len(hashes) == fs.count:
                    fs.hashes = dict(enumerate(hashes))
                    self.link(fs)
                else:
                    unchecked.append(fs)
                continue
            log_path = fs.part + PIECES
            if os.path.isfile(fs.part) and os.path.isfile(log_path):
                with open(log_path) as fh:
                    lines = fh.read().splitlines()
                if lines and lines[0] == f"piece {fs.piece} size {fs.size}":
                    for line in lines[1:]:
                        k, _, digest = line.partition(" ")
                        if k.isdigit() and len(digest) == 64 and int(k) < fs.count:
                            fs.have.add(int(k))
                            fs.hashes[int(k)] = digest
                if fs.have:
                    self.resumed.append(fs.name)
            else:
                with contextlib.suppress(FileNotFoundError):
                    os.remove(log_path)
        return unchecked

    def link(self, fs: FileState) -> None:
        link = os.path.join(self.snap, fs.name)
        os.makedirs(os.path.dirname(link), exist_ok=True)
        if not os.path.lexists(link):
            os.symlink(os.path.relpath(fs.blob, os.path.dirname(link)), link)

    def open_part(self, fs: FileState) -> int:
        """The partial file, made at full size (sparse) with its piece log started."""
        fd = os.open(fs.part, os.O_WRONLY | os.O_CREAT, 0o644)
        if os.fstat(fd).st_size != fs.size:
            os.ftruncate(fd, fs.size)
        log_path = fs.part + PIECES
        if not os.path.isfile(log_path):
            with open(log_path, "w") as fh:
                fh.write(f"piece {fs.piece} size {fs.size}\n")
        return fd

    def mark(self, fs: FileState, k: int, digest: str) -> None:
        """Piece ``k`` is on disk and verified: log it, serve it, and queue the file
        for its whole-file check once every piece is there."""
        with self.lock:
            if k in fs.have or fs.complete:
                return
            with open(fs.part + PIECES, "a") as fh:
                fh.write(f"{k} {digest}\n")
            fs.have.add(k)
            fs.hashes[k] = digest
            fs.failures = 0
            self.changed.notify_all()

    def drop(self, fs: FileState) -> None:
        """Forget every piece of a file that failed its whole-file check."""
        with self.lock:
            fs.have.clear()
            fs.hashes.clear()
            fs.queued = False
            for p in (fs.part, fs.part + PIECES):
                with contextlib.suppress(FileNotFoundError):
                    os.remove(p)
            self.changed.notify_all()

    def state(self, me: str, done: bool) -> bytes:
        with self.lock:
            have = {n: fs.served() for n, fs in self.files.items()}
        return json.dumps({"member": me, "done": done, "have": have}).encode()

    def done(self) -> bool:
        return all(fs.ready() for fs in self.files.values())

    def done_bytes(self) -> int:
        with self.lock:
            return sum(
                fs.size if fs.complete else sum(fs.span(k)[1] for k in fs.have)
                for fs in self.files.values()
            )


# --------------------------------------------------------------------------
# Serving peers
# --------------------------------------------------------------------------


def serve(store: Store, me: str, bind: str, port: int, finished: threading.Event):
    """The peer server: ``/swarm/state`` (which pieces this host holds, and whether it
    is done) and ``/files/NAME`` with one ``Range`` of verified pieces, sent with
    sendfile(2) together with the piece's recorded hash."""
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, fmt: str, *args) -> None:
            pass

        def do_GET(self) -> None:
            if self.path == "/swarm/state":
                body = store.state(me, finished.is_set())
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
                return
            name = unquote(self.path[len("/files/") :]) if self.path.startswith("/files/") else ""
            fs = store.files.get(name)
            wanted = (self.headers.get("Range") or "").removeprefix("bytes=").split("-")
            if fs is None or len(wanted) != 2 or not all(x.isdigit() for x in wanted):
                self.send_error(404)
                return
            start, end = int(wanted[0]), min(int(wanted[1]), fs.size - 1)
            first, last = start // fs.piece, end // fs.piece
            with store.lock:
                ok = all(k in fs.have and k in fs.hashes for k in range(first, last + 1))
                digest = fs.hashes.get(first) if first == last else None
                path = fs.path()
            if not ok or end < start:
                self.send_error(416)
                return
            try:
                fh = open(path, "rb")  # noqa: SIM115
            except FileNotFoundError:  # renamed into place just now
                fh = open(fs.blob, "rb")  # noqa: SIM115
            with fh:
                self.send_response(206)
                self.send_header("Content-Length", str(end - start + 1))
                self.send_header("Content-Range", f"bytes {start}-{end}/{fs.size}")
                if digest and fs.span(first) == (start, end - start + 1):
                    self.send_header(HASH_HEADER, digest)
                self.end_headers()
                os.sendfile(self.wfile.fileno(), fh.fileno(), start, end - start + 1)

    server = ThreadingHTTPServer((bind, port), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


# --------------------------------------------------------------------------
# Moving bytes
# --------------------------------------------------------------------------


def open_url(url: str, headers: dict[str, str]):
    """GET ``url`` over HTTP or HTTPS with http.client, following redirects (the fetch
    script's ``open_following``).  Returns (conn, sock, resp).  No proxies: a swarm
    talks to its Hub or site mirror directly."""
    from urllib.request import getproxies, proxy_bypass

    def connect(url: str):
        u = urlsplit(url)
        if u.scheme in getproxies() and not proxy_bypass(u.hostname):
            raise OSError(f"a proxy is set for {u.scheme}; the swarm talks to {u.netloc} directly")
        if u.scheme == "https":
            return http.client.HTTPSConnection(u.hostname, u.port or 443, timeout=fetch.TIMEOUT)
        return http.client.HTTPConnection(u.hostname, u.port or 80, timeout=fetch.TIMEOUT)

    return fetch.open_following(url, headers, connect)


def body_to(sock, resp, fd: int, n: int) -> None:
    """``n`` bytes of the response body to ``fd`` at its position: what http.client
    already buffered, then splice(2) from the socket; chunked bodies (olah) and TLS
    through http.client.  Called once per piece of one response."""
    import ssl

    if resp.chunked or isinstance(sock, ssl.SSLSocket) or not hasattr(os, "splice"):
        buf = memoryview(bytearray(min(n, fetch.CHUNK) or 1))
        while n:
            k = resp.readinto(buf[: min(n, len(buf))])
            if not k:
                raise OSError(f"connection closed with {n} bytes still to come")
            os.write(fd, buf[:k])
            n -= k
        return
    head = resp.fp.peek(1)[:n] if n else b""
    if head:
        os.write(fd, resp.fp.read(len(head)))
        n -= len(head)
    if n:
        fetch._splice(sock, fd, n)


def closing(*things) -> None:
    for t in things:
        with contextlib.suppress(Exception):
            t.close()


class Swarm:
    """One host's part: stream its files from upstream, fetch the rest from peers,
    check, serve, and linger until the others are done."""

    def __init__(self, a: argparse.Namespace, plan: dict, store: Store, upstream) -> None:
        self.a, self.plan, self.store = a, plan, store
        self.me = plan["me"]
        self.peers = {m: u.rstrip("/") for m, u in plan["members"].items() if m != self.me}
        self.origins = list(plan.get("origins") or [])
        self.upstream = upstream  # (url_of(name), headers), or None: no Hub tools here
        self.dead_after = float(plan.get("dead_after_s", 10))
        self.grace = float(plan.get("grace_s", 30))
        self.views: dict[str, dict] = {}  # peer -> its last /swarm/state
        self.seen: dict[str, float] = {}  # peer -> when it last answered
        self.started = time.monotonic()
        self.busy: dict[str, int] = dict.fromkeys(self.peers, 0)  # my fetches per peer
        self.inflight: set[tuple[str, int]] = set()
        self.bad: set[tuple[str, int, str]] = set()  # (file, piece, peer): failed its hash
        self.finished = threading.Event()
        self.stop = threading.Event()
        self.stats: dict = {
            "upstream_bytes": 0,
            "peer_bytes": {},
            "corrupt": [],
            "took_over": [],
            "repaired": [],
        }
        self.first = self.assign()

    # -- who does what -------------------------------------------------------

    def assign(self) -> dict[str, str]:
        """file -> its first source: the origin with the fewest bytes so far, biggest
        files first (every host computes the same from the same manifest)."""
        load = dict.fromkeys(self.origins, 0)
        out = {}
        for fs in sorted(self.store.files.values(), key=lambda f: (-f.size, f.name)):
            if not self.origins:
                break
            o = min(self.origins, key=lambda m: (load[m], self.origins.index(m)))
            out[fs.name] = o
            load[o] += fs.size
        return out

    def alive(self, member: str) -> bool:
        if member == self.me:
            return True
        last = self.seen.get(member)
        now = time.monotonic()
        if last is None:
            return now - self.started < self.grace
        return now - last < self.dead_after

    def upstream_source(self, fs: FileState) -> str | None:
        """Who streams ``fs`` from upstream now: its first source while that is alive,
        else the next live origin in the plan's order (a takeover)."""
        first = self.first.get(fs.name)
        if first is None:
            return None
        i = self.origins.index(first)
        for m in self.origins[i:] + self.origins[:i]:
            if self.alive(m):
                return m
        return self.me

    def refetch_here(self, fs: FileState) -> None:
        """This host streams ``fs`` from upstream from now on (after a failed check)."""
        with self.store.lock:
            if self.me not in self.origins:
                self.origins.append(self.me)
            self.first[fs.name] = self.me
            self.stats["repaired"].append(fs.name)

    # -- polling peers -------------------------------------------------------

    def poll(self) -> None:
        while not self.stop.is_set():
            for peer, url in self.peers.items():
                u = urlsplit(url)
                view = None
                try:
                    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=3)
                    try:
                        conn.request("GET", "/swarm/state")
                        resp = conn.getresponse()
                        view = json.loads(resp.read()) if resp.status == 200 else None
                    finally:
                        conn.close()
                except (OSError, ValueError, http.client.HTTPException):
                    pass
                with self.store.lock:
                    if view is not None:
                        self.views[peer], self.seen[peer] = view, time.monotonic()
                    self.store.changed.notify_all()
            self.stop.wait(0.5)

    def holders(self, fs: FileState, k: int) -> list[str]:
        out = []
        for peer, view in self.views.items():
            have = view.get("have", {}).get(fs.name)
            if not have or not self.alive(peer) or (fs.name, k, peer) in self.bad:
                continue
            if have == "all" or (isinstance(have, list) and in_ranges(have, k)):
                out.append(peer)
        return out

    # -- choosing work -------------------------------------------------------

    def pick(self) -> tuple[FileState, int, str] | None:
        """A missing piece some live peer holds, from the least busy of those peers;
        or None.  Starts, on the way, the upstream streams and single-piece upstream
        fetches that fall to this host.  Called with the store's lock held."""
        files = list(self.store.files.values())
        random.shuffle(files)
        for fs in files:
            if fs.complete or fs.streaming or fs.queued:
                continue
            missing = [k for k in range(fs.count) if k not in fs.have]
            if not missing:
                continue
            if self.upstream and self.upstream_source(fs) == self.me:
                self.start_stream(fs, missing[0])
                continue
            at = random.randrange(len(missing))
            for k in missing[at:] + missing[:at]:
                if (fs.name, k) in self.inflight:
                    continue
                who = self.holders(fs, k)
                if who:
                    peer = min(who, key=lambda p: (self.busy[p], random.random()))
                    self.inflight.add((fs.name, k))
                    self.busy[peer] += 1
                    return fs, k, peer
                if self.orphan(fs, k):
                    self.inflight.add((fs.name, k))
                    threading.Thread(
                        target=self.piece_from_upstream, args=(fs, k), daemon=True
                    ).start()
        return None

    def orphan(self, fs: FileState, k: int) -> bool:
        """No live peer holds piece ``k`` and none is going to: the holders served it
        corrupt, or nobody streams its file (a swarm seeded by a member that had it
        all, which lost it since) and every peer has been heard from."""
        if not self.upstream:
            return False
        if any(f == fs.name and p == k for f, p, _ in self.bad):
            return True
        if fs.name in self.first:
            return False  # its first source (or the one taking over) streams it
        return all(p in self.views or not self.alive(p) for p in self.peers)

    def worker(self) -> None:
        while not self.stop.is_set():
            with self.store.lock:
                if self.store.done():
                    return
                job = self.pick()
                if job is None:
                    self.store.changed.wait(0.5)
                    continue
            fs, k, peer = job
            try:
                self.piece_from_peer(fs, k, peer)
            finally:
                with self.store.lock:
                    self.inflight.discard((fs.name, k))
                    self.busy[peer] -= 1
                    self.store.changed.notify_all()

    # -- moving pieces -------------------------------------------------------

    def piece_from_peer(self, fs: FileState, k: int, peer: str) -> None:
        start, n = fs.span(k)
        u = urlsplit(self.peers[peer])
        conn = http.client.HTTPConnection(u.hostname, u.port, timeout=fetch.TIMEOUT)
        try:
            rng = {"Range": f"bytes={start}-{start + n - 1}"}
            conn.request("GET", f"/files/{quote(fs.name)}", headers=rng)
            sock = conn.sock
            resp = conn.getresponse()
            if resp.status != 206 or int(resp.getheader("Content-Length") or -1) != n:
                return  # it no longer has it: its next state will say so
            want = resp.getheader(HASH_HEADER)
            fd = self.store.open_part(fs)
            try:
                os.lseek(fd, start, os.SEEK_SET)
                body_to(sock, resp, fd, n)
            finally:
                os.close(fd)
        except (OSError, http.client.HTTPException) as exc:
            log(f"piece {k} of {fs.name} from {peer}: {type(exc).__name__}: {exc}")
            time.sleep(0.2)
            return
        finally:
            conn.close()
        got = hash_range(fs.part, start, n)
        if want and got != want:
            log(
                f"piece {k} of {fs.name} from {peer} failed its checksum "
                f"(sha256 {got[:12]}, {peer} recorded {want[:12]}); "
                "fetching it from another source"
            )
            with self.store.lock:
                self.bad.add((fs.name, k, peer))
                self.stats["corrupt"].append({"file": fs.name, "piece": k, "peer": peer})
            return
        with self.store.lock:
            pb = self.stats["peer_bytes"]
            pb[peer] = pb.get(peer, 0) + n
        self.store.mark(fs, k, got)
        self.maybe_check(fs)

    def start_stream(self, fs: FileState, k0: int) -> None:
        fs.streaming = True
        if self.first.get(fs.name) != self.me:
            self.stats["took_over"].append(fs.name)
            log(f"{fs.name}: its first source {self.first[fs.name]} is gone; fetching it here")
        threading.Thread(target=self.stream, args=(fs, k0), daemon=True).start()

    def stream(self, fs: FileState, k0: int) -> None:
        """The file from upstream in one GET from piece ``k0`` on, each piece hashed
        and served the moment it is on disk."""
        url_of, headers = self.upstream
        start = k0 * fs.piece
        try:
            req = {**headers, "Range": f"bytes={start}-"} if start else dict(headers)
            conn, sock, resp = open_url(url_of(fs.name), req)
            try:
                if resp.status == 200:
                    start = 0  # the server ignored the Range: the body starts at 0
                elif not (resp.status == 206 and start):
                    why = resp.getheader("X-Error-Message") or resp.reason
                    raise OSError(f"HTTP {resp.status} from upstream: {why}")
                fd = self.store.open_part(fs)
                try:
                    os.lseek(fd, start, os.SEEK_SET)
                    for k in range(start // fs.piece, fs.count):
                        s, n = fs.span(k)
                        body_to(sock, resp, fd, n)
                        with self.store.lock:
                            self.stats["upstream_bytes"] += n
                        if k not in fs.have:
                            self.store.mark(fs, k, hash_range(fs.part, s, n))
                finally:
                    os.close(fd)
            finally:
                closing(resp, conn, sock)
        except Exception as exc:
            self.upstream_failed(fs, f"{fs.name} from upstream: {type(exc).__name__}: {exc}")
        finally:
            with self.store.lock:
                fs.streaming = False
                self.store.changed.notify_all()
        self.maybe_check(fs)

    def upstream_failed(self, fs: FileState, why: str) -> None:
        """Log it; the third failure in a row for one file ends the run with it (a
        gated repo without a token, a dead mirror: waiting longer helps nobody)."""
        log(why)
        with self.store.lock:
            fs.failures += 1
            if fs.failures >= 3:
                self.store.failed = why
                self.store.changed.notify_all()
        time.sleep(1)

    def piece_from_upstream(self, fs: FileState, k: int) -> None:
        """One piece from upstream: after a corrupt peer, or when no live peer will
        have it.  An upstream that ignores Range sends from byte 0: read past it."""
        s, n = fs.span(k)
        url_of, headers = self.upstream
        try:
            conn, sock, resp = open_url(
                url_of(fs.name), {**headers, "Range": f"bytes={s}-{s + n - 1}"}
            )
            try:
                if resp.status not in (200, 206):
                    raise OSError(f"HTTP {resp.status} from upstream")
                skip = s if resp.status == 200 else 0
                moved = n + skip
                while skip:
                    data = resp.read(min(skip, fetch.CHUNK))
                    if not data:
                        raise OSError("connection closed early")
                    skip -= len(data)
                fd = self.store.open_part(fs)
                try:
                    os.lseek(fd, s, os.SEEK_SET)
                    body_to(sock, resp, fd, n)
                finally:
                    os.close(fd)
            finally:
                closing(resp, conn, sock)
            with self.store.lock:
                self.stats["upstream_bytes"] += moved
            log(f"piece {k} of {fs.name}: fetched from upstream")
            self.store.mark(fs, k, hash_range(fs.part, s, n))
        except Exception as exc:
            why = f"piece {k} of {fs.name} from upstream: {type(exc).__name__}: {exc}"
            self.upstream_failed(fs, why)
        finally:
            with self.store.lock:
                self.inflight.discard((fs.name, k))
                self.store.changed.notify_all()
        self.maybe_check(fs)

    # -- checking ------------------------------------------------------------

    def maybe_check(self, fs: FileState) -> None:
        with self.store.lock:
            if fs.complete or fs.queued or fs.streaming or len(fs.have) < fs.count:
                return
            fs.queued = True
        threading.Thread(target=self.check_file, args=(fs,), daemon=True).start()

    def check_file(self, fs: FileState) -> None:
        """The assembled file against the Hub's checksum, then into place."""
        part = {os.path.basename(fs.part): fs.meta}
        why = fetch.bad_files(self.store.blobs, part, True)
        if why:
            log(f"{fs.name}: {next(iter(why.values()))} once assembled; fetching it from upstream")
            self.store.drop(fs)
            self.refetch_here(fs)
            return
        os.replace(fs.part, fs.blob)
        with contextlib.suppress(FileNotFoundError):
            os.remove(fs.part + PIECES)
        with self.store.lock:
            fs.complete, fs.queued = True, False
            self.store.changed.notify_all()
        self.store.link(fs)

    def check_complete(self, fs: FileState) -> None:
        """A complete blob without recorded piece hashes (an older pull, or a swarm
        interrupted before its marker): check it against the Hub, hash its pieces."""
        why = fetch.bad_files(self.store.blobs, {os.path.basename(fs.blob): fs.meta}, True)
        if why:
            log(f"{fs.name}: {next(iter(why.values()))}; fetching it again")
            with self.store.lock:
                fs.complete = False
            os.replace(fs.blob, fs.part)
            self.store.drop(fs)
            self.refetch_here(fs)
            return
        hashes = {k: hash_range(fs.blob, *fs.span(k)) for k in range(fs.count)}
        with self.store.lock:
            fs.hashes = hashes
            self.store.changed.notify_all()
        self.store.link(fs)

    # -- the whole run -------------------------------------------------------

    def progress(self, path: str | None) -> None:
        total = sum(fs.size for fs in self.store.files.values())
        base, t0 = self.store.done_bytes(), time.monotonic()
        while path and not self.stop.wait(1.0):
            done = self.store.done_bytes()
            rate = max(done - base, 0) / max(time.monotonic() - t0, 1e-3)
            eta = (total - done) / rate if rate > 0 else None
            tmp = path + ".tmp"
            with open(tmp, "w") as fh:
                json.dump({"done": done, "total": total, "rate": rate, "eta": eta}, fh)
            os.replace(tmp, path)

    def run(self, unchecked: list[FileState], give_up: float) -> bool:
        """Until every file is here and checked; False when that cannot happen (no
        Hub tools here and nobody holds what is missing) or after ``give_up`` s."""
        threading.Thread(target=self.poll, daemon=True).start()
        threading.Thread(target=self.progress, args=(self.a.progress,), daemon=True).start()
        for fs in unchecked:
            threading.Thread(target=self.check_complete, args=(fs,), daemon=True).start()
        for fs in self.store.files.values():
            self.maybe_check(fs)  # every piece was logged before an interruption
        for _ in range(max(1, self.a.workers)):
            threading.Thread(target=self.worker, daemon=True).start()
        deadline = time.monotonic() + give_up
        with self.store.lock:
            while not self.store.done() and time.monotonic() < deadline:
                self.store.changed.wait(1.0)
                if self.store.failed:
                    break
                if (
                    not self.upstream
                    and time.monotonic() - self.started > self.grace
                    and not any(
                        self.holders(fs, k)
                        for fs in self.store.files.values()
                        for k in range(fs.count)
                        if k not in fs.have
                    )
                ):
                    break  # a seed without Hub tools that lost a file nobody else has
            return self.store.done()

    def linger(self, seconds: float) -> None:
        """Serve on until every live member says it is done (or ``seconds``)."""
        self.finished.set()
        end = time.monotonic() + seconds
        waiting: list[str] = []
        while time.monotonic() < end:
            with self.store.lock:
                waiting = [
                    p for p in self.peers if self.alive(p) and not self.views.get(p, {}).get("done")
                ]
            if not waiting:
                if self.peers:
                    time.sleep(1.2)  # two of their polls: they see this host done too
                return
            time.sleep(0.5)
        log(f"stopped serving after {seconds:.0f} s; not done yet: {', '.join(waiting)}")


def upstream_of(repo: str, revision: str):
    """(url_of(name), headers) for the Hub or mirror in HF_ENDPOINT, or None where
    huggingface_hub is not installed (a member that only serves)."""
    try:
        from huggingface_hub import hf_hub_url
        from huggingface_hub.utils import build_hf_headers
    except ImportError:
        return None
    return (lambda n: hf_hub_url(repo, n, revision=revision), build_hf_headers())


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--plan", required=True, help="the swarm plan JSON (llmfleet.swarmplan)")
    p.add_argument("--repo", required=True)
    p.add_argument("--revision", required=True)
    p.add_argument("--cache-dir", required=True)
    p.add_argument("--marker", required=True)
    p.add_argument("--workers", type=int, default=8, help="pieces fetched from peers at once")
    p.add_argument("--progress")
    p.add_argument("--include", action="append", default=[], help="only files matching")
    p.add_argument("--verify", action="store_true", help="check a seed's files' checksums too")
    a = p.parse_args()
    start = time.time()
    with open(a.plan) as fh:
        plan = json.load(fh)
    piece = int(plan.get("piece_bytes", 16 << 20))
    where = f"{a.repo}@{a.revision[:12]}"
    marker = None
    with contextlib.suppress(OSError, ValueError), open(a.marker) as fh:
        marker = json.load(fh)
    seeded = bool(marker and marker.get("revision") == a.revision and marker.get("repo") == a.repo)
    upstream = upstream_of(a.repo, a.revision)
    if seeded:
        files = marker["files"]  # the Hub's manifest, recorded when this host pulled
    elif upstream is None:
        log("huggingface_hub is not installed and no snapshot is recorded here")
        return 2
    else:
        from huggingface_hub import HfApi, constants

        try:
            files = fetch.manifest(HfApi(), a.repo, a.revision, a.include)
        except Exception as exc:
            log(f"cannot list {where} from {constants.ENDPOINT}: {type(exc).__name__}: {exc}")
            return 2
    store = Store(files, fetch.repo_cache_dir(a.cache_dir, a.repo), a.revision, piece)
    known = (marker or {}).get("pieces", {})
    trusted = seeded and known.get("size") == piece and not a.verify
    unchecked = store.load(known.get("sha256") if trusted else None)
    need = sum(fs.size for fs in store.files.values() if not fs.complete)
    if need and (problem := fetch.space_problem(a.cache_dir, need, f"the swarm for {where}")):
        log(problem)
        return 3
    swarm = Swarm(a, plan, store, upstream)
    try:
        server = serve(store, plan["me"], plan["bind"], int(plan["port"]), swarm.finished)
    except OSError as exc:
        log(
            f"cannot serve peers on {plan['bind']}:{plan['port']}: {exc} (is a fan-out or "
            "another swarm still serving there? weights_peer_port sets the port)"
        )
        return 2
    try:
        if not swarm.run(unchecked, float(plan.get("give_up_s", 6 * 3600))):
            missing = sorted(n for n, fs in store.files.items() if not fs.ready())
            why = f" ({store.failed})" if store.failed else ""
            log(f"{where}: gave up with {len(missing)} file(s) incomplete{why}: {missing[:5]}")
            return 1
        record = {
            "repo": a.repo,
            "revision": a.revision,
            "path": store.snap,
            "bytes": sum(fs.size for fs in store.files.values()),
            "files": files,
            "verified": True,
            "refetched": sorted(
                {c["file"] for c in swarm.stats["corrupt"]} | set(swarm.stats["repaired"])
            ),
            "resumed": sorted(store.resumed),
            "transfer": "swarm",
            "pieces": {
                "size": piece,
                "sha256": {
                    n: [fs.hashes[k] for k in range(fs.count)] for n, fs in store.files.items()
                },
            },
            "first_source": swarm.first,
            "swarm": swarm.stats,
            "seconds": round(time.time() - start, 1),
        }
        if not seeded or unchecked or swarm.stats["repaired"]:
            fetch.write_marker(a.marker, record)
        swarm.linger(float(plan.get("linger_s", 600)))
        summary = {k: record[k] for k in ("path", "bytes", "seconds", "refetched", "resumed")}
        print(json.dumps({**summary, "swarm": swarm.stats}), flush=True)
        return 0
    finally:
        swarm.stop.set()
        server.shutdown()


if __name__ == "__main__":
    sys.exit(main())
