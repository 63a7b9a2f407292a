"""A pass-through in front of the lab Hub that adds the one route olah-offline lacks.

The lab Hub is olah in offline mode serving git repos; it answers the routes
huggingface_hub uses, but not ``/api/models/{org}/{repo}`` without a
revision.  An olah *site mirror* (``deploys/mirror.py``) asks exactly that of
its upstream before fetching anything, as it would of the real Hub.  This
shim answers it from ``.../revision/main`` and streams every other request
through unchanged, so the lab can prove the mirror against a Hub stand-in.
Lab only: the real Hub has the route.

    python3 -m llmfleet.lab.hubshim --bind 10.213.0.1 --port 8092 --upstream http://10.213.0.1:8090
"""

from __future__ import annotations

import argparse
import http.client
import re
import shutil
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

REPO_INFO = re.compile(r"^/api/models/[^/]+/[^/?]+/?(\?.*)?$")
# hop-by-hop headers, and the two BaseHTTPRequestHandler writes itself
HOP = {
    "connection",
    "keep-alive",
    "transfer-encoding",
    "te",
    "upgrade",
    "proxy-connection",
    "server",
    "date",
}


def make_handler(upstream: str) -> type[BaseHTTPRequestHandler]:
    up = urllib.parse.urlsplit(upstream)

    class Shim(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _forward(self) -> None:
            path = self.path
            if REPO_INFO.match(path):
                path = path.split("?")[0].rstrip("/") + "/revision/main"
            conn = http.client.HTTPConnection(up.hostname, up.port or 80, timeout=300)
            headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP}
            headers["Host"] = up.netloc
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else None
            conn.request(self.command, path, body=body, headers=headers)
            resp = conn.getresponse()
            self.send_response(resp.status, resp.reason)
            for k, v in resp.getheaders():
                if k.lower() not in HOP:
                    self.send_header(k, v)
            if resp.getheader("Content-Length") is None and self.command != "HEAD":
                self.send_header("Connection", "close")
                self.close_connection = True
            self.end_headers()
            if self.command != "HEAD":
                shutil.copyfileobj(resp, self.wfile, 1 << 20)
            conn.close()

        do_GET = do_HEAD = do_POST = _forward

        def log_message(self, fmt: str, *args) -> None:  # quiet; olah logs the requests
            pass

    return Shim


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--bind", required=True)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--upstream", required=True)
    a = p.parse_args()
    ThreadingHTTPServer((a.bind, a.port), make_handler(a.upstream)).serve_forever()


if __name__ == "__main__":
    main()


def daemon(run_dir):
    from .hub import Daemon

    return Daemon("hubshim", run_dir, match="llmfleet.lab.hubshim")


def start(run_dir, bind: str, port: int, upstream: str) -> str:
    """Run the shim detached (kept when its settings are unchanged); return its URL."""
    import json
    import sys

    argv = [
        sys.executable,
        "-m",
        "llmfleet.lab.hubshim",
        "--bind",
        bind,
        "--port",
        str(port),
        "--upstream",
        upstream,
    ]
    from .hub import probe_url, wait_http

    d = daemon(run_dir)
    d.ensure(argv, stamp=json.dumps(argv))
    url = f"http://{bind}:{port}"
    wait_http(probe_url(url), d)  # through the shim to the Hub: both answer
    return url
