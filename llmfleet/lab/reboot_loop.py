"""Start systemd-nspawn again when its container reboots, so a lab host can reboot.

systemd-nspawn exits with status 133 when the container's systemd asks for a
reboot; ``systemd-nspawn@.service`` restarts it on that status
(``RestartForceExitStatus=133``).  The control machine runs no systemd, so
this small supervisor does the same for each lab host: it runs nspawn,
starts it again on 133, passes SIGTERM/SIGINT/SIGHUP on (a stop is a stop,
not a reboot) and otherwise exits with nspawn's status.

    python3 -m llmfleet.lab.reboot_loop [--cgroups JSON] systemd-nspawn --boot ...

``--cgroups`` names the host's cgroup subtree per hierarchy (see
:mod:`llmfleet.lab.cgroups`): each nspawn it starts is moved there between
fork and exec, so the container and everything it runs stay in the host's
own subtree from its first instruction on.  The loop itself stays where it
was started: on the unified hierarchy a process the container cannot see
must not sit in the container's cgroups (it would read as PID 0 there).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

from . import cgroups

REBOOT_STATUS = 133


def _mover(subtree: dict[str, str]):
    """A preexec_fn moving the child into ``subtree``; it says why on stderr
    (the host's log) when a hierarchy refuses, and nspawn does not start."""

    def move() -> None:
        try:
            cgroups.enter(subtree)
        except OSError as exc:
            os.write(2, f"llmfleet lab: {exc}\n".encode())
            raise

    return move


def main(argv: list[str]) -> int:
    subtree: dict[str, str] = {}
    if argv[:1] == ["--cgroups"]:
        subtree, argv = json.loads(argv[1]), argv[2:]
        cgroups.create(subtree)
    child: subprocess.Popen | None = None
    stopping = False

    def forward(signum: int, _frame) -> None:
        nonlocal stopping
        stopping = True
        if child is not None and child.poll() is None:
            child.send_signal(signum)

    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, forward)
    while True:
        try:
            child = subprocess.Popen(argv, preexec_fn=_mover(subtree) if subtree else None)
        except subprocess.SubprocessError:
            return 1  # the reason is in the log already (see _mover)
        status = child.wait()
        if status != REBOOT_STATUS or stopping:
            return status
        print(
            f"--- llmfleet lab: container rebooted at {time.ctime()}; starting it again", flush=True
        )


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
