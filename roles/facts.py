"""Facts the serve roles need, each one round trip and forgiving of missing tools."""

from __future__ import annotations

import json

from pyinfra.api import FactBase

from llmfleet.probe import models_command


class PortListeners(FactBase):
    """Processes listening on a TCP port that do not belong to ``unit``.

    ``[{"process": ..., "pid": ..., "line": ...}]``; a listener inside the
    unit's own cgroup (our server, already running there) is not a clash.
    """

    def command(self, port: int, unit: str) -> str:
        # /proc/PID/cgroup names the unit on cgroup v1, v2 and hybrid hosts alike
        return (
            f"out=$(ss -Htlnp 'sport = :{int(port)}' 2>/dev/null); "
            'printf "%s\\n" "$out"; '
            "for p in $(printf '%s' \"$out\" | grep -o 'pid=[0-9]*' | cut -d= -f2 | sort -u); do "
            f'grep -qs "/{unit}$" /proc/$p/cgroup && echo "owned $p"; done; true'
        )

    def process(self, output: list[str]) -> list[dict[str, str]]:
        owned = {line.split()[1] for line in output if line.startswith("owned ")}
        out = []
        for line in output:
            if line.startswith("owned ") or not line.strip():
                continue
            users = line.split("users:", 1)[1] if "users:" in line else ""
            name = users.split('"')[1] if '"' in users else "unknown"
            pids = [p.split(",")[0].rstrip(")") for p in users.split("pid=")[1:]]
            if pids and all(p in owned for p in pids):
                continue
            out.append({"process": name, "pid": ",".join(pids) or "?", "line": line.strip()})
        return out

    def default(self) -> list:
        return []


class ServedModels(FactBase):
    """The model ids the local endpoint lists, asked with the server's own API key
    (read on the host from its 0600 env file); None when nothing answers."""

    def command(self, port: int, key_env: str | None = None) -> str:
        return models_command(port, key_env)

    def process(self, output: list[str]) -> list[str] | None:
        try:
            return json.loads("\n".join(output))
        except ValueError:
            return None

    def default(self) -> None:
        return None


class TextFile(FactBase):
    """A small file's text, or None; for markers that say what is installed."""

    def command(self, path: str) -> str:
        return f"cat {path} 2>/dev/null || true"

    def process(self, output: list[str]) -> str | None:
        return "\n".join(output).strip() or None

    def default(self):
        return None
