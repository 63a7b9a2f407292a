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
_BEGIN = re.compile(rf"^{MARK} begin ([A-Za-z0-9_.-]+)$")
# a command whose output does not end in a newline (``cat`` of a marker file) leaves
# its last line in front of the end marker: that prefix is output
_END = re.compile(rf"^(.*){MARK} end ([A-Za-z0-9_.-]+) (\d+)$")


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
        line = line.rstrip("\r\n")
        begin, end = _BEGIN.match(line), _END.match(line)
        if begin:
            current, body = begin.group(1), []
        elif end and end.group(2) == current:
            if end.group(1):
                body.append(end.group(1))
            found[current] = (int(end.group(3)), body)
            current = None
        elif current is not None:
            body.append(line)
    return found
