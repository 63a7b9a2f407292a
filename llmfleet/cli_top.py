"""``llmfleet top INVENTORY``: the terminal side of ``llmfleet/top.py``.

Refreshes a table in place (rich's Live display) until Ctrl-C; ``--once`` prints
one table (``--json``: the rows as JSON, for scripts).  A direct scrape needs two
samples for rates, so ``--once`` scrapes twice, ``--interval`` seconds apart.
"""

from __future__ import annotations

import argparse
import time

from rich.live import Live
from rich.table import Table

from . import top
from .catalog import Catalog
from .cli_fleet import _fleet
from .fleetmetrics import Row
from .terminal import console, print_json
from .validate import plan_host

COLUMNS = (
    ("host", "host"),
    ("engine", "engine"),
    ("run", "running"),
    ("wait", "waiting"),
    ("KV %", "kv_cache_pct"),
    ("gen tok/s", "gen_tok_s"),
    ("TTFT p50", "ttft_p50_s"),
    ("TTFT p99", "ttft_p99_s"),
    ("restarts", "restarts"),
    ("GPU %", "gpu_util_pct"),
    ("GPU mem GB", "gpu_mem"),
)


def _cell(row: Row, key: str) -> str:
    if key == "gpu_mem":
        used, size = row.gpu_mem_used_gb, row.gpu_mem_total_gb
        return "-" if used is None else f"{used:.1f}/{size:.0f}" if size else f"{used:.1f}"
    value = getattr(row, key)
    if value is None:
        return "-"
    if isinstance(value, str):
        return value
    if key.startswith("ttft"):
        return f"{value * 1000:.0f} ms" if value < 10 else f"{value:.1f} s"
    if key in ("running", "waiting", "restarts"):
        return f"{value:.0f}"
    return f"{value:.1f}"


def table(rows: list[Row], source: str, inventory: str) -> Table:
    t = Table(title=f"llmfleet top: {inventory}  (from {source}, {time.strftime('%H:%M:%S')})")
    for title, _ in COLUMNS:
        t.add_column(title, justify="left" if title in ("host", "engine") else "right")
    for row in rows:
        cells = [_cell(row, key) for _, key in COLUMNS]
        if row.engine and row.up is False:
            cells[1] = f"[red]{row.engine} down[/red]"
        if row.error and not row.engine:
            cells[1] = f"[red]{row.error}[/red]"
        t.add_row(*cells)
    return t


def cmd_top(cat: Catalog, a: argparse.Namespace) -> int:
    hosts = _fleet(a.inventory, a.limit)
    plans = [plan_host(cat, n, d, str(d.get("ssh_hostname") or n)) for n, d in hosts]
    src = top.source(top.Fleet(cat, plans), a.source)
    if a.once:
        rows = src.rows()
        if src.name == "direct":  # rates need a second sample
            time.sleep(a.interval)
            rows = src.rows()
        if a.json:
            print_json({"source": src.name, "hosts": [r.as_json() for r in rows]})
        else:
            console.print(table(rows, src.name, a.inventory))
        return 0
    with Live(table(src.rows(), src.name, a.inventory), console=console, screen=False) as live:
        try:
            while True:
                time.sleep(a.interval)
                live.update(table(src.rows(), src.name, a.inventory))
        except KeyboardInterrupt:
            pass
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "top",
        help="live per-host table: requests running/waiting, KV cache, tok/s, TTFT, "
        "restarts, GPU use",
    )
    p.add_argument("inventory", help="a pyinfra inventory file, e.g. inventories/lab_monitor.py")
    p.add_argument("--limit", action="append", metavar="HOST", help="only this host")
    p.add_argument("--once", action="store_true", help="print one table and exit")
    p.add_argument("--json", action="store_true", help="with --once: the rows as JSON")
    p.add_argument(
        "--interval", type=float, default=2.0, help="seconds between refreshes (default 2)"
    )
    p.add_argument(
        "--source",
        choices=("auto", "prometheus", "direct"),
        default="auto",
        help="auto (default): the monitoring host's Prometheus when it answers, else "
        "scrape each host's endpoints",
    )
    p.set_defaults(func=cmd_top)
