"""Engine command lines as ordered flags, so recipes can be merged and compared.

A recipe keeps the guide's flags in the guide's order.  Overlays and
overrides replace a flag's values in place (or append a new flag) rather
than adding a second copy, because engines take the last copy silently and
the rendered unit would no longer say what runs.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterable

Flag = tuple[str, list[str]]

_FLAG = re.compile(r"^--?[A-Za-z]")


def is_flag(token: str) -> bool:
    """``-dp`` and ``--tp`` are flags; ``-1`` (a value) is not."""
    return bool(_FLAG.match(token))


def split_lines(lines: Iterable[str]) -> list[str]:
    """Recipe ``args`` are shell-quoted lines, one flag per line, as in the guides."""
    tokens: list[str] = []
    for line in lines:
        tokens.extend(shlex.split(str(line)))
    return tokens


def parse(tokens: Iterable[str]) -> list[Flag]:
    """Group tokens into (flag, values); ``--a=b`` becomes ``--a`` with value ``b``."""
    flags: list[Flag] = []
    for token in tokens:
        if is_flag(token):
            name, eq, value = token.partition("=")
            flags.append((name, [value] if eq else []))
        elif flags:
            flags[-1][1].append(token)
        else:
            raise ValueError(f"value {token!r} comes before any flag")
    return flags


def unparse(flags: Iterable[Flag]) -> list[str]:
    out: list[str] = []
    for name, values in flags:
        out.append(name)
        out.extend(values)
    return out


def find(flags: list[Flag], names: Iterable[str]) -> Flag | None:
    wanted = set(names)
    for flag in flags:
        if flag[0] in wanted:
            return flag
    return None


def set_flag(flags: list[Flag], name: str, values: list[str]) -> list[Flag]:
    """Replace the flag's values where it stands, or append it."""
    out = [(n, list(v)) for n, v in flags]
    for i, (n, _) in enumerate(out):
        if n == name:
            out[i] = (name, list(values))
            return out
    out.append((name, list(values)))
    return out


def remove_flag(flags: list[Flag], name: str) -> list[Flag]:
    return [(n, list(v)) for n, v in flags if n != name]


def merge(base: list[Flag], extra: list[Flag]) -> list[Flag]:
    for name, values in extra:
        base = set_flag(base, name, values)
    return base
