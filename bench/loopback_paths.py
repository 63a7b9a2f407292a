#!/usr/bin/env python3
"""Where the direct pull's time goes on loopback: variants of its body copy, each
timed until the files are fsynced, against a local sendfile copy of the same files.

    python3 bench/loopback_paths.py [BYTES]     # default 2 GiB in 4 files, 3 rounds

Serves a git repo of 4 page-cached files with ``llmfleet.lab.statichub`` on
127.0.0.1 (sendfile, like a CDN), then times, in the same order each round:
the local sendfile copy (the disk's limit), ``fetch_file`` of
``files/scripts/llmfleet-fetch.py`` as it is (splice through a 1 MiB pipe),
the same with a 256 KiB pipe, the same with ``posix_fallocate`` of each file
first, and ``curl -o``.  Take the lab lock while it runs: it uses both cores.
"""

from __future__ import annotations

import fcntl
import importlib.util
import os
import select
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from llmfleet.lab import hub as labhub  # noqa: E402
from llmfleet.lab.statichub import StaticHub  # noqa: E402

spec = importlib.util.spec_from_file_location("fetch", ROOT / "files/scripts/llmfleet-fetch.py")
F = importlib.util.module_from_spec(spec)
spec.loader.exec_module(F)
WORK = Path(os.environ.get("LLMFLEET_BENCH_DIR", "/var/tmp/llmfleet-loopback"))
N = 4


def make_repo(size: int) -> tuple[Path, str]:
    def write(work: Path) -> None:
        for i in range(N):
            with open(work / f"s{i}", "wb") as fh:
                block = os.urandom(1 << 20)
                for _ in range(size // N >> 20):
                    fh.write(block)

    refs = labhub.build_repo_from_files(WORK / "m", "x/y", write, "x", compression=0)
    work = labhub.repo_path(WORK / "m", "x/y")
    for i in range(N):
        (work / f"s{i}").read_bytes()  # page-cached, as for every variant
    return work, refs["main"]


def fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    os.fsync(fd)
    os.close(fd)


def timed(name: str, fn, size: int) -> None:
    out = WORK / "out"
    subprocess.run(["rm", "-rf", str(out)], check=True)
    out.mkdir()
    os.sync()
    t0 = time.perf_counter()
    threads = [threading.Thread(target=fn, args=(i, out)) for i in range(N)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    returned = time.perf_counter() - t0
    for i in range(N):
        fsync(out / f"s{i}")
    total = time.perf_counter() - t0
    print(
        f"{name:26} returned {returned:5.2f} s, on disk {total:5.2f} s "
        f"{size / 1e6 / total:7.0f} MB/s",
        flush=True,
    )


def splice_through(pipe: int):
    def _splice(sock, fd: int, n: int) -> None:
        rp, wp = os.pipe()
        try:
            fcntl.fcntl(wp, F.F_SETPIPE_SZ, pipe)
            while n:
                try:
                    k = os.splice(sock.fileno(), wp, min(n, pipe))
                except BlockingIOError:
                    select.select([sock], [], [], 60)
                    continue
                if k == 0:
                    raise OSError("connection closed")
                left = k
                while left:
                    left -= os.splice(rp, fd, left)
                n -= k
        finally:
            os.close(rp)
            os.close(wp)

    return _splice


def main() -> int:
    size = int(sys.argv[1]) if len(sys.argv) > 1 else 2 << 30
    WORK.mkdir(parents=True, exist_ok=True)
    work, commit = make_repo(size)
    each = size // N >> 20 << 20
    with StaticHub(work, "x/y", commit) as hub:

        def url(i: int) -> str:
            return f"{hub.url}/x/y/resolve/{commit}/s{i}"

        def local(i: int, out: Path) -> None:
            with open(work / f"s{i}", "rb") as fi, open(out / f"s{i}", "wb") as fo:
                off = 0
                while off < each:
                    off += os.sendfile(fo.fileno(), fi.fileno(), off, each - off)

        def direct(i: int, out: Path) -> None:
            F.fetch_file(url(i), str(out / f"s{i}"), each, {})

        def patched(attr: str, value):
            def run(i: int, out: Path) -> None:
                saved = getattr(F, attr)
                setattr(F, attr, value)
                try:
                    direct(i, out)
                finally:
                    setattr(F, attr, saved)

            return run

        body = F._copy_body

        def fallocated(sock, resp, fd: int, n: int) -> None:
            os.posix_fallocate(fd, os.lseek(fd, 0, os.SEEK_CUR), n)
            body(sock, resp, fd, n)

        def curl(i: int, out: Path) -> None:
            subprocess.run(["curl", "-sf", "-o", str(out / f"s{i}"), url(i)], check=True)

        variants = {
            "local sendfile copy": local,
            "toolkit direct (as is)": direct,
            "pipe 256 KiB": patched("_splice", splice_through(256 << 10)),
            "fallocate + pipe 1 MiB": patched("_copy_body", fallocated),
            "curl -o": curl,
        }
        for _ in range(3):
            for name, fn in variants.items():
                timed(name, fn, size)
    subprocess.run(["rm", "-rf", str(WORK)], check=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
