"""Wait, bounded, until a service of ours answers over HTTP on the host itself."""

from __future__ import annotations

import shlex

from pyinfra import host

PROBE = "import sys, urllib.request as u; u.urlopen(sys.argv[1], timeout=3)"


def wait_answers(url: str, unit: str, what: str, timeout: int = 60) -> None:
    """``url`` answers (2xx) within ``timeout`` seconds, or the deploy fails this host
    naming ``what`` with the unit's last journal lines."""
    ok, out = host.run_shell_command(
        f"for i in $(seq {int(timeout)}); do python3 -c {shlex.quote(PROBE)} "
        f"{shlex.quote(url)} 2>/dev/null && exit 0; sleep 1; done; "
        f"journalctl -u {shlex.quote(unit)} -n 30 --no-pager -o cat; exit 1"
    )
    if not ok:
        raise RuntimeError(
            f"{host.name}: {what} did not answer at {url} within {timeout}s:\n{out.stdout}"
        )
