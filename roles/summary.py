"""The per-host table printed when a deploy ends, unreachable and failed hosts included."""

from __future__ import annotations

import atexit
import time

from pyinfra.context import ctx_state
from rich.console import Console
from rich.table import Table

from .health import RESULTS

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
    atexit.register(_print, state, title)


def _status(state, host) -> tuple[str, str]:
    result = RESULTS.get(host.name)
    if host not in state.activated_hosts:
        return "[red]unreachable[/red]", "could not connect (see the pyinfra output above)"
    if host in state.failed_hosts:
        detail = result.get("error", "") if result else "an operation failed (see above)"
        return "[red]failed[/red]", detail
    if not result:
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


def _print(state, title: str) -> None:
    table = Table(title=f"{title}: {time.time() - _STARTED:.0f}s")
    for col in ("host", "recipe", "model", "status", "detail"):
        table.add_column(col, overflow="fold")
    for host in state.inventory:
        info = PLANNED.get(host.name, {})
        status, detail = _status(state, host)
        table.add_row(host.name, info.get("recipe", "-"), info.get("model", "-"), status, detail)
    Console(stderr=False).print(table)
