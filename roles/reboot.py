"""Reboot a host and wait until it is back: the new boot, not just an open port.

Why not ``server.reboot``: it confirms the reboot by /proc/uptime going down,
which never happens in a container (systemd-nspawn shows the machine's
uptime), so the lab's hosts would wait out the whole timeout.  Like Ansible's
reboot module this compares ``/proc/sys/kernel/random/boot_id``, which
changes on every boot of a kernel and of a booted container.
"""

from __future__ import annotations

import time

from pyinfra.api import FactBase, FunctionCommand, StringCommand, operation


class BootId(FactBase):
    """The current boot's id (changes on every boot)."""

    def command(self) -> str:
        return "cat /proc/sys/kernel/random/boot_id"

    def process(self, output: list[str]) -> str | None:
        return output[0].strip() if output else None


@operation(is_idempotent=False)
def reboot_and_wait(timeout: float = 1200, interval: float = 3, delay: float = 5):
    """Reboot, then reconnect until the boot id differs (or fail after ``timeout``)."""
    before: list[str | None] = []

    def capture(state, host) -> None:
        before.append(host.get_fact(BootId))

    yield FunctionCommand(capture, (), {})
    # detached, so the SSH channel closes before the machine goes down
    yield StringCommand("( sleep 1 && systemctl reboot ) </dev/null >/dev/null 2>&1 &")

    def wait(state, host) -> None:
        time.sleep(delay)
        host.disconnect()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            host.connect(show_errors=False)
            if host.connected:
                now = host.get_fact(BootId)
                if now and now != before[0]:
                    return
                host.disconnect()
            time.sleep(interval)
        raise RuntimeError(f"{host.name}: not back from the reboot after {timeout:.0f}s")

    yield FunctionCommand(wait, (), {})
