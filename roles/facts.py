"""Facts the serve roles need, each one round trip and forgiving of missing tools."""

from __future__ import annotations

import json
import re
import shlex

from pyinfra.api import FactBase

from llmfleet.probe import models_command


class PortListeners(FactBase):
    """Processes listening on a TCP port that do not belong to ``unit``.

    ``[{"process": ..., "pid": ..., "line": ...}]``; a listener inside the
    unit's own cgroup (our server, already running there) is not a clash.
    """

    def command(self, port: int, unit: str, container: str | None = None) -> str:
        # /proc/PID/cgroup names the unit on cgroup v1, v2 and hybrid hosts alike; a
        # docker release listens from our container (its id in the cgroup) or, with -p,
        # through dockerd's docker-proxy for our container's port
        mine = (
            f"cid=$(docker inspect -f '{{{{.Id}}}}' {container} 2>/dev/null); "
            'if [ -n "$cid" ]; then for p in $pids; do '
            'grep -qs "$cid" /proc/$p/cgroup && echo "owned $p"; done; '
            f'docker port {container} 2>/dev/null | grep -q ":{int(port)}$" && '
            'for p in $(pgrep -x docker-proxy); do echo "owned $p"; done; fi; '
            if container
            else ""
        )
        return (
            f"out=$(ss -Htlnp 'sport = :{int(port)}' 2>/dev/null); "
            'printf "%s\\n" "$out"; '
            "pids=$(printf '%s' \"$out\" | grep -o 'pid=[0-9]*' | cut -d= -f2 | sort -u); "
            f'for p in $pids; do grep -qs "/{unit}$" /proc/$p/cgroup && echo "owned $p"; done; '
            f"{mine}true"
        )

    def process(self, output: list[str]) -> list[dict[str, str]]:
        owned = {line.split()[1] for line in output if line.startswith("owned ")}
        out = []
        for line in output:
            if line.startswith("owned ") or not line.strip():
                continue
            users = line.split("users:", 1)[1] if "users:" in line else ""
            procs = re.findall(r'\("([^"]*)",pid=(\d+)', users)
            strangers = [(name, pid) for name, pid in procs if pid not in owned]
            if procs and not strangers:
                continue  # our own server
            out.append(
                {
                    "process": ", ".join(sorted({n for n, _ in strangers})) or "unknown",
                    "pid": ",".join(p for _, p in strangers) or "?",
                    "line": line.strip(),
                }
            )
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


class InterfaceOf(FactBase):
    """The network interface that holds ``address`` on the host (None: none does): a
    serving group member's NIC on the group's network, for NCCL/Gloo/HCCL's
    ``*_SOCKET_IFNAME`` when the inventory does not name it."""

    def command(self, address: str) -> str:
        return f"ip -o addr show to {shlex.quote(address)} 2>/dev/null || true"

    def process(self, output: list[str]) -> str | None:
        # "2: host0    inet 10.213.0.11/24 brd ..." -> host0
        for line in output:
            parts = line.split()
            if len(parts) > 1:
                return parts[1].split("@")[0]
        return None


class GroupLink(FactBase):
    """A headless worker's link to rank 0 as the health script sees it at once (None:
    no script yet, a first deploy), for the summary of a run that changed nothing."""

    def command(self, script: str, connect: tuple[str, ...]) -> str:
        targets = " ".join(f"--connect {shlex.quote(c)}" for c in connect)
        return (
            f"[ -x {script} ] && python3 {script} --port 0 --model - --timeout 2 --settle 0 "
            f"{targets} || true"
        )

    def process(self, output: list[str]) -> dict | None:
        try:
            return json.loads(output[-1])
        except (ValueError, IndexError):
            return None
