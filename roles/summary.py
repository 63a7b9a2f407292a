"""The per-host table printed when a deploy ends, unreachable and failed hosts included."""

from __future__ import annotations

import atexit
import json
import os
import re
import sys
import time
from pathlib import Path

from pyinfra.context import ctx_state
from rich.console import Console
from rich.table import Table

from llmfleet.tuning import APPLIED, Finding

from .health import RESULTS
from .weights import RESULTS as PULLS
from .weights import _human

PLANNED: dict[str, dict[str, str]] = {}
TUNING: dict[str, list[Finding]] = {}
STACK: dict[str, dict[str, str]] = {}
_STARTED = time.time()
_registered = False


def note(host_name: str, **info: str) -> None:
    PLANNED.setdefault(host_name, {}).update(info)


def note_tuning(host_name: str, findings: list[Finding]) -> None:
    """Record the host tuning outcome; a second table lists it knob by knob."""
    TUNING[host_name] = list(findings)


def note_stack(host_name: str, info: dict[str, str]) -> None:
    """Record the accelerator stack outcome; a third table lists it per host."""
    STACK.setdefault(host_name, {}).update(info)


def register(title: str) -> None:
    global _registered
    if _registered:
        return
    _registered = True
    state = ctx_state.get()
    # --limit: only the hosts this run targets belong in the table
    limit = state.limit_hosts if isinstance(state.limit_hosts, list) else None
    atexit.register(_print, state, title, limit)


def _dry() -> bool:
    """``pyinfra --dry``: the operations were planned and shown, none ran."""
    return "--dry" in sys.argv


def _status(state, host) -> tuple[str, str]:
    result = RESULTS.get(host.name)
    if host not in state.activated_hosts:
        return "[red]unreachable[/red]", "could not connect (see the pyinfra output above)"
    if _dry():  # nothing ran: no health gate, no failing operation; say what is known
        error = PLANNED.get(host.name, {}).get("error")
        if error:
            return "[red]would fail[/red]", error
        serving = result and result.get("probe") and result.get("ok")
        return "[cyan]dry run[/cyan]", "nothing applied" + ("; serving now" if serving else "")
    if host in state.failed_hosts:
        detail = (
            result.get("error", "")
            if result
            else PLANNED.get(host.name, {}).get("error") or "an operation failed (see above)"
        )
        return "[red]failed[/red]", detail
    if not result:
        if host.name in PLANNED:
            return "[green]ok[/green]", ""
        return "[yellow]not checked[/yellow]", ""
    if result.get("ok"):
        reply = result.get("reply")
        detail = (
            f"answered {reply!r} after {result['seconds']}s"
            if reply is not None
            else "already serving (no change, not restarted)"
        )
        return "[green]healthy[/green]", detail
    return "[red]unhealthy[/red]", str(result.get("error", result))


def _print(state, title: str, limit: list | None = None) -> None:
    table = Table(title=f"{title}: {time.time() - _STARTED:.0f}s")
    results: dict[str, dict] = {}
    for col in ("host", "recipe", "release", "model", "weights", "status", "detail"):
        table.add_column(col, overflow="fold")
    for host in state.inventory:
        if limit is not None and host not in limit:
            continue
        info = PLANNED.get(host.name, {})
        status, detail = _status(state, host)
        results[host.name] = {
            "status": re.sub(r"\[/?[a-z]+\]", "", status),
            "detail": detail,
            **info,
        }
        table.add_row(
            host.name,
            info.get("recipe", "-"),
            info.get("release", "-"),
            info.get("model", "-"),
            _weights(host.name, info),
            status,
            detail,
        )
    console = Console()
    if not console.is_terminal:  # logs and CI: do not fold host names and errors at 80
        console.width = max(console.width, 160)
    console.print(table)
    if os.environ.get("LLMFLEET_RESULTS"):  # for wrappers (llmfleet rollout)
        Path(os.environ["LLMFLEET_RESULTS"]).write_text(json.dumps(results, indent=2))
    if any(TUNING.get(h.name) for h in state.inventory if limit is None or h in limit):
        console.print(_tuning_table(state, limit))
    if any(STACK.get(h.name) for h in state.inventory if limit is None or h in limit):
        console.print(_stack_table(state, limit))


def _stack_table(state, limit: list | None) -> Table:
    """Per host: the stack, its pinned driver, what this run installed, the reboot
    decision and the verify result (the problems, when it failed)."""
    dry = " (dry run: planned, nothing applied)" if _dry() else ""
    table = Table(title=f"accelerator stack{dry}")
    columns = ("stack", "driver", "installs", "reboot", "verify")
    for col in ("host", *columns):
        table.add_column(col, overflow="fold")
    for host in state.inventory:
        info = STACK.get(host.name)
        if not info or (limit is not None and host not in limit):
            continue
        verify = info.get("verify") or (
            "failed before verify" if host in state.failed_hosts else "not run"
        )
        table.add_row(host.name, *(info.get(c, "-") for c in columns[:-1]), verify)
    return table


_TUNING_STYLE = {"applied": "green", "skipped": "yellow", "unsupported": "yellow"}


def _tuning_table(state, limit: list | None) -> Table:
    """Per host and knob: wanted, before this run, now, and why it is not applied."""
    table = Table(title="host tuning")
    for col in ("host", "setting", "wanted", "was", "now", "status", "detail"):
        table.add_column(col, overflow="fold")
    for host in state.inventory:
        if limit is not None and host not in limit:
            continue
        ok = host in state.activated_hosts and host not in state.failed_hosts
        for f in TUNING.get(host.name, []):
            status = f.status if ok or f.status != APPLIED else "failed"
            now = (f.wanted if ok else "?") if f.status == APPLIED else f.now
            style = _TUNING_STYLE.get(status, "red")
            detail = f"{f.reason}; fix: {f.fix}" if f.fix and status != APPLIED else f.reason
            table.add_row(
                host.name, f.setting, f.wanted, f.now, now, f"[{style}]{status}[/{style}]", detail
            )
    return table


def _weights(name: str, info: dict[str, str]) -> str:
    pull = PULLS.get(name)
    if pull:
        again = f", re-fetched {', '.join(pull['refetched'])}" if pull.get("refetched") else ""
        return f"pulled {_human(pull.get('bytes', 0))} in {pull['wall']}s{again}"
    return (
        "cached (verified)"
        if info.get("weights") == "verified"
        else ("cached" if "model" in info else "-")
    )
