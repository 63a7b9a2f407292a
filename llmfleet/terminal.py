"""The terminal side of the CLI: rich tables for people, exact text and JSON for scripts."""

from __future__ import annotations

import json
import sys
from typing import Any

from rich.console import Console

console = Console()
err = Console(stderr=True)


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2) + "\n")


def raw(text: str) -> None:
    """Print a file's text exactly (no markup, no wrapping, no added newline)."""
    sys.stdout.write(text)
