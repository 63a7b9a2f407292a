"""The per-host table printed when a deploy ends, unreachable and failed hosts included.

It reads the run's host records (``roles/run.py``) and turns each into one
typed ``HostOutcome`` (``llmfleet/outcome.py``); the same outcomes go to the
file named by ``LLMFLEET_RESULTS`` as JSON, which ``llmfleet rollout`` and
scripts read.
"""

from __future__ import annotations

import atexit
import json
import os
import sys
import time
from pathlib import Path

from pyinfra.context import ctx_state
from rich.console import Console
from rich.table import Table

from llmfleet.outcome import HostOutcome, Status, outcome
from llmfleet.tuning import APPLIED, Finding

from .run import Run, current_run, record

_STYLE = {
    Status.HEALTHY: "green",
    Status.OK: "green",
    Status.DRY_RUN: "cyan",
    Status.NOT_CHECKED: "yellow",
}


def note_tuning(host_name: str, findings: list[Finding]) -> None:
    """Record the host tuning outcome; a second table lists it knob by knob."""
    record(host_name).tuning = list(findings)


def note_stack(host_name: str, info: dict[str, str]) -> None:
    """Record the accelerator stack outcome; a third table lists it per host."""
    record(host_name).stack.update(info)


def register(title: str) -> None:
    """Print the summary when this pyinfra run ends (once per run)."""
    run = current_run()
    if run.title is not None:
        return
    run.title = title
    state = ctx_state.get()
    # --limit: only the hosts this run targets belong in the table
    limit = state.limit_hosts if isinstance(state.limit_hosts, list) else None
    atexit.register(_print, state, run, time.time(), limit)


def _dry() -> bool:
    """``pyinfra --dry``: the operations were planned and shown, none ran."""
    return "--dry" in sys.argv


def outcomes(state, run: Run, limit: list | None) -> list[HostOutcome]:
    out = []
    for host in state.inventory:
        if limit is not None and host not in limit:
            continue
        out.append(
            outcome(
                host.name,
                run.record(host.name),
                connected=host in state.activated_hosts,
                failed=host in state.failed_hosts,
                dry=_dry(),
            )
        )
    return out


def _print(state, run: Run, started: float, limit: list | None = None) -> None:
    results = outcomes(state, run, limit)
    table = Table(title=f"{run.title}: {time.time() - started:.0f}s")
    for col in ("host", "recipe", "release", "model", "weights", "status", "detail"):
        table.add_column(col, overflow="fold")
    for o in results:
        style = _STYLE.get(o.status, "red")
        table.add_row(
            o.host,
            o.recipe,
            o.release,
            o.model,
            o.weights,
            f"[{style}]{o.status.value}[/{style}]",
            o.detail,
        )
    console = Console()
    if not console.is_terminal:  # logs and CI: do not fold host names and errors at 80
        console.width = max(console.width, 160)
    console.print(table)
    if os.environ.get("LLMFLEET_RESULTS"):  # for scripts and `llmfleet rollout`
        Path(os.environ["LLMFLEET_RESULTS"]).write_text(
            json.dumps({o.host: o.to_json() for o in results}, indent=2)
        )
    shown = [h for h in state.inventory if limit is None or h in limit]
    if any(run.record(h.name).tuning for h in shown):
        console.print(_tuning_table(state, run, shown))
    if any(run.record(h.name).stack for h in shown):
        console.print(_stack_table(state, run, shown))


def _stack_table(state, run: Run, shown: list) -> Table:
    """Per host: the stack, its pinned driver, what this run installed, the reboot
    decision and the verify result (the problems, when it failed)."""
    dry = " (dry run: planned, nothing applied)" if _dry() else ""
    table = Table(title=f"accelerator stack{dry}")
    columns = ("stack", "driver", "installs", "reboot", "verify")
    for col in ("host", *columns):
        table.add_column(col, overflow="fold")
    for host in shown:
        info = run.record(host.name).stack
        if not info:
            continue
        verify = info.get("verify") or (
            "failed before verify" if host in state.failed_hosts else "not run"
        )
        table.add_row(host.name, *(info.get(c, "-") for c in columns[:-1]), verify)
    return table


_TUNING_STYLE = {"applied": "green", "skipped": "yellow", "unsupported": "yellow"}


def _tuning_table(state, run: Run, shown: list) -> Table:
    """Per host and knob: wanted, before this run, now, and why it is not applied."""
    table = Table(title="host tuning")
    for col in ("host", "setting", "wanted", "was", "now", "status", "detail"):
        table.add_column(col, overflow="fold")
    for host in shown:
        ok = host in state.activated_hosts and host not in state.failed_hosts
        for f in run.record(host.name).tuning:
            status = f.status if ok or f.status != APPLIED else "failed"
            now = (f.wanted if ok else "?") if f.status == APPLIED else f.now
            style = _TUNING_STYLE.get(status, "red")
            detail = f"{f.reason}; fix: {f.fix}" if f.fix and status != APPLIED else f.reason
            table.add_row(
                host.name, f.setting, f.wanted, f.now, now, f"[{style}]{status}[/{style}]", detail
            )
    return table
