"""Many host facts in one SSH round trip: their commands joined into one shell script,
their output split back by section.

pyinfra 3 caches no facts, so every ``host.get_fact`` is its own command over SSH
(measured: a no-op serve deploy cost 35 commands per host, docs/scale.md).  The
command of each fact still decides what is read and its ``process`` how it is
parsed; only the transport is shared.  Each section runs in its own subshell with
its stderr dropped and its exit status recorded, so one failing probe yields that
fact's default and leaves the others alone, as separate facts would.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

MARK = "__llmfleet_fact__"
_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")
_LINE = re.compile(rf"^{MARK} (begin|end) ([A-Za-z0-9_.-]+)(?: (\d+))?$")


def batch_command(sections: Mapping[str, str]) -> str:
    """One shell script running every ``{name: command}`` in turn, each framed by
    marker lines.  Commands may hold heredocs: each closes on its own line."""
    parts = []
    for name, command in sections.items():
        if not _NAME.match(name):
            raise ValueError(f"fact section name {name!r}: letters, digits, _ . - only")
        parts.append(
            f"echo '{MARK} begin {name}'\n( {command}\n) 2>/dev/null\necho \"{MARK} end {name} $?\""
        )
    return "\n".join(parts)


def split_output(lines: list[str]) -> dict[str, tuple[int, list[str]]]:
    """``{name: (exit status, output lines)}`` for every section that ran to its end
    marker; a section cut off (the connection dropped) is absent."""
    found: dict[str, tuple[int, list[str]]] = {}
    current: str | None = None
    body: list[str] = []
    for line in lines:
        m = _LINE.match(line.rstrip("\r\n"))
        if m and m.group(1) == "begin":
            current, body = m.group(2), []
        elif m and m.group(1) == "end" and m.group(2) == current:
            found[current] = (int(m.group(3) or 1), body)
            current = None
        elif current is not None:
            body.append(line)
    return found
