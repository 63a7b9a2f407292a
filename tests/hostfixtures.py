"""Read the captured host outputs; strip the ``$ cmd`` / ``[rc=N]`` transcript framing."""

from __future__ import annotations

from pathlib import Path

HOSTS = Path(__file__).parent / "fixtures" / "hosts"


def raw(host: str, name: str) -> str:
    return (HOSTS / host / name).read_text()


def output(host: str, name: str) -> str:
    """What the command printed: the first ``$ ...`` line and the last ``[rc=N]`` line removed."""
    lines = raw(host, name).splitlines()
    if lines and lines[0].startswith("$ "):
        lines = lines[1:]
    if lines and lines[-1].startswith("[rc="):
        lines = lines[:-1]
    return "\n".join(lines) + "\n"
