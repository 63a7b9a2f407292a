"""Start systemd-nspawn again when its container reboots, so a lab host can reboot.

systemd-nspawn exits with status 133 when the container's systemd asks for a
reboot; ``systemd-nspawn@.service`` restarts it on that status
(``RestartForceExitStatus=133``).  The control machine runs no systemd, so
this small supervisor does the same for each lab host: it runs nspawn,
starts it again on 133, passes SIGTERM/SIGINT/SIGHUP on (a stop is a stop,
not a reboot) and otherwise exits with nspawn's status.

    python3 -m llmfleet.lab.reboot_loop systemd-nspawn --boot ...
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time

REBOOT_STATUS = 133


def main(argv: list[str]) -> int:
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
        child = subprocess.Popen(argv)
        status = child.wait()
        if status != REBOOT_STATUS or stopping:
            return status
        print(
            f"--- llmfleet lab: container rebooted at {time.ctime()}; starting it again", flush=True
        )


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
