"""Facts the serve roles need, each one round trip and forgiving of missing tools."""

from __future__ import annotations

import json
import shlex

from pyinfra.api import FactBase


class PortListeners(FactBase):
    """Processes listening on a TCP port: ``[{"process": ..., "pid": ...}]``."""

    def command(self, port: int) -> str:
        return f"ss -Htlnp 'sport = :{int(port)}' 2>/dev/null || true"

    def process(self, output: list[str]) -> list[dict[str, str]]:
        out = []
        for line in output:
            users = line.split("users:", 1)[1] if "users:" in line else ""
            name = users.split('"')[1] if '"' in users else "unknown"
            pid = users.split("pid=")[1].split(",")[0] if "pid=" in users else "?"
            out.append({"process": name, "pid": pid, "line": line.strip()})
        return out

    def default(self) -> list:
        return []


class HttpJson(FactBase):
    """GET a local URL and parse JSON; None when nothing answers (used for health)."""

    def command(self, url: str) -> str:
        code = (
            "import json,sys,urllib.request as u\n"
            "try:\n"
            f"    print(u.urlopen({url!r}, timeout=5).read().decode())\n"
            "except Exception:\n"
            "    print('null')\n"
        )
        return f"python3 -c {shlex.quote(code)}"

    def process(self, output: list[str]):
        try:
            return json.loads("\n".join(output))
        except ValueError:
            return None

    def default(self):
        return None


class TextFile(FactBase):
    """A small file's text, or None; for markers that say what is installed."""

    def command(self, path: str) -> str:
        return f"cat {path} 2>/dev/null || true"

    def process(self, output: list[str]) -> str | None:
        return "\n".join(output).strip() or None

    def default(self):
        return None
