"""The per-host table printed when a deploy ends, unreachable and failed hosts included."""

from __future__ import annotations

import atexit
import time

from pyinfra.context import ctx_state
from rich.console import Console
from rich.table import Table

from .health import RESULTS
from .weights import RESULTS as PULLS
from .weights import _human

PLANNED: dict[str, dict[str, str]] = {}
_STARTED = time.time()
_registered = False


def note(host_name: str, **info: str) -> None:
    PLANNED.setdefault(host_name, {}).update(info)


def register(title: str) -> None:
    global _registered
    if _registered:
        return
    _registered = True
    state = ctx_state.get()
    # --limit: only the hosts this run targets belong in the table
    limit = state.limit_hosts if isinstance(state.limit_hosts, list) else None
    atexit.register(_print, state, title, limit)


def _status(state, host) -> tuple[str, str]:
    result = RESULTS.get(host.name)
    if host not in state.activated_hosts:
        return "[red]unreachable[/red]", "could not connect (see the pyinfra output above)"
    if host in state.failed_hosts:
        detail = result.get("error", "") if result else "an operation failed (see above)"
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
    for col in ("host", "recipe", "model", "weights", "status", "detail"):
        table.add_column(col, overflow="fold")
    for host in state.inventory:
        if limit is not None and host not in limit:
            continue
        info = PLANNED.get(host.name, {})
        status, detail = _status(state, host)
        table.add_row(
            host.name,
            info.get("recipe", "-"),
            info.get("model", "-"),
            _weights(host.name, info),
            status,
            detail,
        )
    console = Console()
    if not console.is_terminal:  # logs and CI: do not fold host names and errors at 80
        console.width = max(console.width, 160)
    console.print(table)


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
