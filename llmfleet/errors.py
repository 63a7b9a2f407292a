"""Errors that carry enough context for the person at the terminal to act.

Every problem found before touching a host names the host, the setting and a
fix, because "KeyError: 'tp'" at 3 a.m. is worse than no tool at all.
"""

from __future__ import annotations

from dataclasses import dataclass


class LlmfleetError(Exception):
    """Base class: the CLI prints these without a traceback."""


@dataclass(frozen=True)
class Problem:
    """One finding of validation; ``severity`` is ``error`` or ``warning``."""

    host: str
    field: str
    message: str
    fix: str = ""
    severity: str = "error"

    def __str__(self) -> str:
        text = f"{self.host}: {self.field}: {self.message}"
        return f"{text} (fix: {self.fix})" if self.fix else text


class ValidationError(LlmfleetError):
    """Raised when validation found at least one error-severity problem."""

    def __init__(self, problems: list[Problem]):
        self.problems = [p for p in problems if p.severity == "error"]
        super().__init__("\n".join(str(p) for p in self.problems))
