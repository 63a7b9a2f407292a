"""Read the captured host outputs; strip the ``$ cmd`` / ``[rc=N]`` transcript framing."""

from __future__ import annotations

from pathlib import Path

from llmfleet.lab.vendor import transcript_output

HOSTS = Path(__file__).parent / "fixtures" / "hosts"


def raw(host: str, name: str) -> str:
    return (HOSTS / host / name).read_text()


def output(host: str, name: str) -> str:
    """What the command printed: the first ``$ ...`` line and the last ``[rc=N]`` line removed."""
    return transcript_output(raw(host, name))
