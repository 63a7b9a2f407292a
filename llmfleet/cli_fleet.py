"""The on-call commands across a fleet: status, releases, logs/restart/gpus, rollout.

Each reads the inventory in a child process (pyinfra's CLI package gevent-patches
the process that imports it) and talks to the hosts over SSH (``llmfleet/oncall.py``)
or through pyinfra itself (``llmfleet/rollout.py``).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

from rich.table import Table

from .catalog import Catalog
from .errors import LlmfleetError
from .terminal import console, err, print_json


def _fleet(inventory: str, limit: list[str] | None = None) -> list[tuple[str, dict]]:
    """(name, data) per inventory host, read in a child process: importing pyinfra's CLI
    package gevent-patches the importing process, which deadlocks the SSH threads here."""
    proc = subprocess.run(
        [sys.executable, "-m", "llmfleet.inventory_data", inventory],
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        raise LlmfleetError(
            proc.stderr.strip().splitlines()[-1]
            if proc.stderr.strip()
            else f"inventory {inventory}: could not be read"
        )
    hosts = [(name, data) for name, data in json.loads(proc.stdout)]
    if limit:
        hosts = [(n, d) for n, d in hosts if n in limit]
        if not hosts:
            raise LlmfleetError(f"--limit {' '.join(limit)}: no such host in {inventory}")
    return hosts


def _uptime(seconds: int | None) -> str:
    if seconds is None:
        return "-"
    h, rem = divmod(int(seconds), 3600)
    return f"{h}h{rem // 60:02d}m" if h else f"{rem // 60}m{rem % 60:02d}s"


def cmd_status(cat: Catalog, a: argparse.Namespace) -> int:
    from . import oncall

    rows = [
        oncall.status_row(r)
        for r in oncall.run_everywhere(_fleet(a.inventory, a.limit), oncall.status_command())
    ]
    if a.json:
        print_json(rows)
    else:
        table = Table(title=f"llmfleet status: {a.inventory}")
        cols = ("host", "release", "recipe", "engine", "model", "unit", "uptime", "health")
        for col in cols:
            table.add_column(col, overflow="fold")
        for r in rows:
            if not r["reachable"]:
                table.add_row(
                    r["host"],
                    "-",
                    "-",
                    "-",
                    "-",
                    "[red]unreachable[/red]",
                    "-",
                    f"[red]{r['error']}[/red]",
                )
                continue
            health = r["health"] or "-"
            colour = "green" if health == "serving" else "red"
            unit = r["unit"]
            ucol = "green" if unit.startswith("active") else "red"
            table.add_row(
                r["host"],
                r["release"] or "-",
                r["recipe"] or "-",
                r["engine"] or "-",
                r["model"] or "-",
                f"[{ucol}]{unit}[/{ucol}]",
                _uptime(r["uptime_s"]),
                f"[{colour}]{health}[/{colour}]",
            )
        console.print(table)
    return 0 if all(r["reachable"] and r["health"] == "serving" for r in rows) else 1


def cmd_releases(cat: Catalog, a: argparse.Namespace) -> int:
    """Every release kept on every host (its manifest), newest first."""
    from . import oncall

    results = oncall.run_everywhere(_fleet(a.inventory, a.limit), oncall.releases_command())
    rows = [row for r in results if r.ok for row in oncall.release_rows(r)]
    failed = [r for r in results if not r.ok]
    if a.json:
        print_json({"releases": rows, "errors": {r.host: r.error for r in failed}})
        return 1 if failed else 0
    table = Table(title=f"llmfleet releases: {a.inventory}")
    cols = ("host", "release", "mark", "created", "recipe", "model", "port")
    for col in cols:
        table.add_column(col, overflow="fold")
    for row in rows:
        mark = row["mark"]
        style = "green" if mark == "current" else "cyan" if mark else ""
        table.add_row(
            *(str(row[c]) for c in cols[:2]),
            f"[{style}]{mark}[/{style}]" if style else "",
            *(str(row[c]) for c in cols[3:]),
        )
    for r in failed:
        table.add_row(r.host, "-", "[red]unreachable[/red]", "-", "-", f"[red]{r.error}[/red]", "-")
    console.print(table)
    return 1 if failed else 0


def cmd_oncall(cat: Catalog, a: argparse.Namespace) -> int:
    """logs / restart / gpus: one command on every host, output per host."""
    from . import oncall

    command = {
        "logs": lambda: oncall.logs_command(a.lines),
        "restart": oncall.restart_command,
        "gpus": oncall.gpu_command,
    }[a.cmd]()
    results = oncall.run_everywhere(_fleet(a.inventory, a.limit), command)
    for r in results:
        colour = "green" if r.ok else "red"
        console.rule(f"[{colour}]{r.host}[/{colour}]")
        if r.stdout:
            console.print(r.stdout.rstrip(), highlight=False, markup=False)
        if r.error:
            err.print(f"[red]{r.error}[/red]", highlight=False)
    return 0 if all(r.ok for r in results) else 1


def cmd_rollout(cat: Catalog, a: argparse.Namespace) -> int:
    from . import rollout

    hosts = [name for name, _ in _fleet(a.inventory, a.limit)]
    extra = [x for kv in (a.data or []) for x in ("--data", kv)]
    if a.dry:  # what would change per host, with diffs of unit and env file; nothing runs
        argv = [
            sys.executable,
            "-m",
            "pyinfra",
            "--dry",  # no -y: with it pyinfra skips the change detection --dry prints
            "--diff",
            a.inventory,
            a.deploy,
            *rollout.limit_args(hosts),
            *extra,
        ]
        return subprocess.run(argv, check=False).returncode
    run = rollout.pyinfra_runner(a.inventory, a.deploy, extra, Path.cwd())
    say = lambda m: console.rule(m)  # noqa: E731
    hook = _bench_gate(cat, a, say) if a.bench_gate is not None else None
    result = rollout.roll(hosts, a.batch, a.max_fail, run, say=say, hook=hook)
    table = Table(title=f"rollout of {a.deploy}: " + ("stopped" if result.stopped else "done"))
    for col in ("host", "result"):
        table.add_column(col, overflow="fold")
    for h in result.done:
        table.add_row(h, "[green]deployed[/green]")
    for h, why in result.failed.items():
        table.add_row(h, f"[red]{why}[/red]")
    for h in result.skipped:
        table.add_row(h, "[yellow]not touched (rollout stopped)[/yellow]")
    console.print(table)
    return 1 if result.failed else 0


def _bench_gate(cat: Catalog, a: argparse.Namespace, say):
    """The benchmark gate of ``rollout --bench-gate PCT``: a batch slower than the release
    before it by more than PCT goes back with ``deploys/rollback.py``."""
    from . import bench, benchstore, rollout
    from .benchgate import BenchGate

    if a.bench_gate < 0:
        raise LlmfleetError(f"--bench-gate {a.bench_gate}: a percentage, 0 or more")

    def revert(hosts: list[str], release: str) -> dict[str, dict]:
        back = rollout.pyinfra_runner(
            a.inventory, "deploys/rollback.py", ["--data", f"release={release}"], Path.cwd()
        )
        return back(hosts)

    return BenchGate(
        cat,
        _fleet(a.inventory, a.limit),
        a.bench_gate,
        revert,
        req=bench.Request(
            results=a.bench_results or benchstore.default_root(), repeat=a.bench_repeat
        ),
        say=lambda m: console.print(m, highlight=False),
    )
