"""What every lab test module shares: a fresh lab, SSH to its hosts, pyinfra runs."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from llmfleet.lab import hosts, lab

ROOT = Path(__file__).resolve().parents[2]


@contextmanager
def fresh_lab(
    n: int, docker: bool = False, monitor: bool = False, light: bool = False
) -> Iterator[dict[str, Any]]:
    """An ``n``-host lab from clean hosts (whatever was left running), always taken down;
    ``docker``: hosts that run docker, the outside registry and the engine image;
    ``monitor``: the Debian mirror on every host and a STAND-IN accelerator exporter;
    ``light``: light hosts (systemd and sshd only, each SSH session logged)."""
    assert os.geteuid() == 0, "the lab tests need root (deselect them with -m 'not lab')"
    try:
        lab.down()
        yield lab.up(hosts=n, docker=docker, monitor=monitor, light=light)
    finally:
        lab.down()


def ssh_run(host: dict[str, Any], command: str, timeout: float = 120) -> str:
    """Stdout of ``command`` on a lab host (strict host keys); fails the test on error."""
    proc = subprocess.run(
        hosts.ssh_argv(host, command), capture_output=True, text=True, timeout=timeout
    )
    assert proc.returncode == 0, f"{host['name']}: `{command}`: {proc.stderr}"
    return proc.stdout.strip()


def run_pyinfra(
    deploy: str,
    *args: str,
    inventory: str = "inventories/lab.py",
    limit: str | None = None,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess:
    """``pyinfra -y INVENTORY DEPLOY`` with no Hub token in its environment (plus ``env``);
    stdout holds pyinfra's log and our summary together."""
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("HF_")}, **(env or {})}
    where = ["--limit", limit] if limit else []
    return subprocess.run(
        [sys.executable, "-m", "pyinfra", "-y", inventory, deploy, *where, *args],
        cwd=ROOT,
        env={**env, "COLUMNS": "200"},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=1800,
    )


class Run:
    """One pyinfra run: exit code, output, and the Results table's grand total."""

    def __init__(self, proc: subprocess.CompletedProcess, seconds: float) -> None:
        self.rc, self.seconds = proc.returncode, seconds
        self.out = proc.stdout + (proc.stderr or "")
        # hosts "-": no operation at all (a serve run whose hosts all are at their plan)
        m = re.search(r"Grand total\s+(\d+|-)\s+(\S+)\s+(\S+)\s+(\S+)", self.out)
        self.total = m.groups() if m else None

    @property
    def changed(self) -> int:
        assert self.total, f"no results table in:\n{self.out[-3000:]}"
        return 0 if self.total[1] == "-" else int(self.total[1])

    def __repr__(self) -> str:
        return f"Run(rc={self.rc}, total={self.total}, {self.seconds:.0f}s)\n{self.out[-5000:]}"
