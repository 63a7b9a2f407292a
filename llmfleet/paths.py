"""Where the data files and templates live.

Data sits in the repository's ``files/`` (recipes are data users edit and
extend), so the package looks for it next to itself; ``LLMFLEET_FILES``
points elsewhere for a site's own catalog.
"""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent


def files_dir() -> Path:
    return Path(os.environ.get("LLMFLEET_FILES", REPO_ROOT / "files"))


def templates_dir() -> Path:
    return files_dir() / "templates"
