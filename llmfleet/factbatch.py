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

import base64
import json
import re
import shlex
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


# Runs several Python probes in one interpreter (its start-up is most of what a small
# probe costs a host): each program as __main__ with its own argv, its stdout framed
# by the same marker lines, its exit status from SystemExit (1 on any exception).
_PY_RUNNER = """
import base64, contextlib, io, json, sys
for name, code, argv in json.loads(base64.b64decode(PAYLOAD)):
    buf, rc = io.StringIO(), 0
    sys.argv = argv
    try:
        with contextlib.redirect_stdout(buf):
            exec(compile(code, name, "exec"), {"__name__": "__main__"})
    except SystemExit as exc:
        rc = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except BaseException:
        rc = 1
    text = buf.getvalue()
    if text and not text.endswith(chr(10)):
        text += chr(10)
    nl = chr(10)
    sys.stdout.write("MARK begin %s" % name + nl + text + "MARK end %s %d" % (name, rc) + nl)
""".replace("MARK", MARK)


def python_batch(programs: Mapping[str, tuple[str, list[str]]]) -> str:
    """One ``python3`` command running every ``{name: (source, argv)}`` in turn; its
    output splits like :func:`batch_command`'s (one section per program).  Programs
    must need only the standard library (``-S``: no site-packages, a faster start)."""
    for name in programs:
        if not _NAME.match(name):
            raise ValueError(f"fact section name {name!r}: letters, digits, _ . - only")
    payload = [[name, code, list(argv)] for name, (code, argv) in programs.items()]
    b64 = base64.b64encode(json.dumps(payload).encode()).decode()
    return f"python3 -S -c {shlex.quote(_PY_RUNNER.replace('PAYLOAD', repr(b64)))}"


def split_output(lines: list[str]) -> dict[str, tuple[int, list[str]]]:
    """``{name: (exit status, output lines)}`` for every section that ran to its end
    marker; a section cut off (the connection dropped) is absent.  A section may hold
    sections (a :func:`python_batch` inside a :func:`batch_command`): the inner ones
    are returned, the outer one, left without content, is not."""
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
