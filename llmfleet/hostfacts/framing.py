"""The ``=== $ CMD`` framing of fact output, and telling "tool not there" from output."""

from __future__ import annotations

import re

SECTION_MARK = "=== $ "
_RC_LINE = re.compile(r"^\[rc=(\d+)\]$")


def split_sections(text: str) -> dict[str, str]:
    """Split ``=== $ CMD`` framed output into ``{CMD: output}``.

    The captured ``host.txt`` uses this framing, and so does the one-round-trip
    fact that gathers host basics, so one parser serves both. A trailing
    ``[rc=N]`` line is dropped.
    """
    out: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in text.splitlines():
        if line.startswith(SECTION_MARK):
            current = out.setdefault(line[len(SECTION_MARK) :].strip(), [])
        elif current is not None:
            current.append(line)
    for lines in out.values():
        if lines and _RC_LINE.match(lines[-1].strip()):
            lines.pop()
    return {cmd: "\n".join(lines) for cmd, lines in out.items()}


def absent(text: str | None) -> bool:
    """True when the output says the tool or file is not there."""
    if not text or not text.strip():
        return True
    low = text.lower()
    return (
        any(s in low for s in ("command not found", "no such file or directory", "not found"))
        and len(text.strip().splitlines()) <= 2
    )
