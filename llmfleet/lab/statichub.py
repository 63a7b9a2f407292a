"""A static, read-only Hugging Face Hub stand-in for the pull benchmark.

Why not olah here: olah 0.5.4 in offline mode reads each git blob whole on one
core and writes it in 4 KiB pieces, so it tops out near 20 MB/s on this
machine and the benchmark would measure olah, not the client.  The real Hub
serves weights from a CDN; this server is the closest cheap equivalent: it
answers the four routes huggingface_hub uses for a pinned snapshot and sends
file bodies with ``sendfile(2)``, so the server costs almost no CPU and the
client and the disk are what is measured.  It serves exactly one repo at one
commit, from a git work tree checked out at that commit.

Routes (what ``snapshot_download``, ``list_repo_tree`` and ``hf download`` ask):

* ``GET  /api/models/{repo}/revision/{rev}``: repo info (``sha``, ``siblings``)
* ``GET  /api/models/{repo}/tree/{rev}[/{path}]``: the file list (size, blob id)
* ``HEAD /{repo}/resolve/{rev}/{path}``: ``X-Repo-Commit``, ``ETag``, size
* ``GET  /{repo}/resolve/{rev}/{path}``: the bytes, honouring one ``Range``

``rev`` may be the commit or ``main``; anything else is a 404 with the Hub's
``X-Error-Code`` header, as huggingface_hub expects.  Benchmark only: the lab
and the toolkit use olah, a real mirror.
"""

from __future__ import annotations

import json
import re
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")


def git_files(work_tree: Path, commit: str) -> dict[str, dict]:
    """{path: {"size", "oid"}} of every blob at ``commit`` (from git itself: the
    blob ids are the ETags the Hub gives for non-LFS files)."""
    out = subprocess.run(
        ["git", "-C", str(work_tree), "ls-tree", "-r", "-l", "-z", commit],
        check=True,
        capture_output=True,
    ).stdout.decode()
    files = {}
    for entry in filter(None, out.split("\0")):
        meta, path = entry.split("\t", 1)
        _mode, kind, oid, size = meta.split()
        if kind == "blob":
            files[path] = {"size": int(size), "oid": oid}
    return files


class StaticHub:
    """One repo, one commit, served from ``work_tree`` on a background thread."""

    def __init__(self, work_tree: Path, repo: str, commit: str, host: str = "127.0.0.1") -> None:
        self.work_tree, self.repo, self.commit = Path(work_tree), repo, commit
        self.files = git_files(self.work_tree, commit)
        self.requests: list[tuple[str, str, str]] = []  # (method, path, Range): for tests
        self.ignore_range = False  # answer 200 to a Range, as some CDNs do
        self.chunked = False  # send bodies chunked, without Content-Length, as olah does
        self.server = ThreadingHTTPServer((host, 0), self._handler())
        self.server.daemon_threads = True
        self.url = f"http://{host}:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> StaticHub:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        hub = self
        api = f"/api/models/{hub.repo}/"
        resolve = f"/{hub.repo}/resolve/"

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, fmt: str, *args) -> None:
                pass

            def _json(self, body: object) -> None:
                data = json.dumps(body).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _missing(self, code: str) -> None:
                self.send_response(404)
                self.send_header("X-Error-Code", code)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def _rev_rest(self, path: str) -> tuple[bool, str]:
                rev, _, rest = path.partition("/")
                return unquote(rev) in (hub.commit, "main"), unquote(rest)

            def do_GET(self) -> None:
                self._route(body=True)

            def do_HEAD(self) -> None:
                self._route(body=False)

            def _route(self, body: bool) -> None:
                path = urlsplit(self.path).path
                hub.requests.append((self.command, unquote(path), self.headers.get("Range", "")))
                if path.startswith(api + "revision/"):
                    ok, _ = self._rev_rest(path[len(api + "revision/") :])
                    if not ok:
                        return self._missing("RevisionNotFound")
                    siblings = [{"rfilename": f} for f in sorted(hub.files)]
                    return self._json({"id": hub.repo, "sha": hub.commit, "siblings": siblings})
                if path.startswith(api + "tree/"):
                    ok, prefix = self._rev_rest(path[len(api + "tree/") :])
                    if not ok:
                        return self._missing("RevisionNotFound")
                    entries = [
                        {"type": "file", "path": f, "size": m["size"], "oid": m["oid"]}
                        for f, m in sorted(hub.files.items())
                        if not prefix or f.startswith(prefix.rstrip("/") + "/")
                    ]
                    return self._json(entries)
                if path.startswith(resolve):
                    ok, name = self._rev_rest(path[len(resolve) :])
                    if not ok:
                        return self._missing("RevisionNotFound")
                    if name not in hub.files:
                        return self._missing("EntryNotFound")
                    return self._file(name, body)
                return self._missing("RepoNotFound")

            def _file(self, name: str, body: bool) -> None:
                meta = hub.files[name]
                size, start, end = meta["size"], 0, meta["size"] - 1
                m = None if hub.ignore_range else RANGE.match(self.headers.get("Range", ""))
                if m and m.group(1):
                    start = int(m.group(1))
                    end = min(int(m.group(2)), size - 1) if m.group(2) else size - 1
                self.send_response(206 if m and m.group(1) else 200)
                self.send_header("X-Repo-Commit", hub.commit)
                self.send_header("ETag", f'"{meta["oid"]}"')
                self.send_header("Accept-Ranges", "bytes")
                self.send_header("Content-Type", "application/octet-stream")
                if hub.chunked:
                    self.send_header("Transfer-Encoding", "chunked")
                else:
                    self.send_header("Content-Length", str(max(end - start + 1, 0)))
                if m and m.group(1):
                    self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
                self.end_headers()
                if body and hub.chunked:
                    with open(hub.work_tree / name, "rb") as fh:
                        fh.seek(start)
                        left = end - start + 1
                        while left > 0:
                            piece = fh.read(min(left, 1 << 20))
                            self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
                            left -= len(piece)
                    self.wfile.write(b"0\r\n\r\n")
                elif body and end >= start:
                    with open(hub.work_tree / name, "rb") as fh:
                        self.connection.sendfile(fh, start, end - start + 1)

        return Handler


def main() -> None:
    """Serve by hand: ``python3 -m llmfleet.lab.statichub WORK_TREE REPO COMMIT``
    (prints the URL, then serves until killed)."""
    import sys

    work, repo, commit = sys.argv[1:4]
    hub = StaticHub(Path(work), repo, commit)
    print(hub.url, flush=True)
    hub.server.serve_forever()


if __name__ == "__main__":
    main()
