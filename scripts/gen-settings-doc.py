#!/usr/bin/env python3
"""Regenerate the key table in docs/settings.md from the schema (llmfleet/settings.py).

    python3 scripts/gen-settings-doc.py

tests/test_settings.py fails until this has been run after a schema change.
"""

from pathlib import Path

from llmfleet.settings import schema_markdown

BEGIN, END = "<!-- generated: llmfleet settings --markdown -->\n", "<!-- end generated -->"
path = Path(__file__).resolve().parent.parent / "docs" / "settings.md"
text = path.read_text()
head, rest = text.split(BEGIN, 1)
path.write_text(head + BEGIN + schema_markdown() + END + rest.split(END, 1)[1])
print(f"wrote {path}")
