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
    groups = oncall.group_rows(rows)
    if a.json:
        print_json(rows if not groups else {"hosts": rows, "groups": groups})
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
            if r.get("group"):
                health = f"{health} ({r['group']} rank {r['rank']}, {r['role']})"
            colour = "green" if oncall.serving(r) else "red"
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
        for g in groups:
            _print_group(g)
    return 0 if all(oncall.serving(r) for r in rows) else 1


def _print_group(g: dict) -> None:
    verdict = "[green]healthy[/green]" if g["healthy"] else "[red]NOT healthy[/red]"
    table = Table(title=f"serve group {g['group']}: {verdict}")
    for col in ("rank", "host", "role", "unit", "state", "release"):
        table.add_column(col, overflow="fold")
    for r in g["ranks"]:
        table.add_row(
            *(
                str(r[k] if r[k] is not None else "-")
                for k in ("rank", "host", "role", "unit", "health", "release")
            )
        )
    console.print(table)


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


def _rollout_units(inventory: str, limit: list[str] | None) -> tuple[list[str], list[list[str]]]:
    """The hosts to roll and their units: a serving group's members go together, and a
    ``--limit`` that names one member takes the whole group (said on stderr)."""
    from .grouplife import batch_units

    everyone = _fleet(inventory)
    group_of = {n: d.get("serve_group") for n, d in everyone}
    chosen = {n for n, _ in _fleet(inventory, limit)} if limit else set(group_of)
    groups = {group_of[n] for n in chosen if group_of[n]}
    added = [n for n, g in group_of.items() if g in groups and n not in chosen]
    if added:
        err.print(f"rollout: whole serving groups go together; adding {', '.join(added)}")
    hosts = [n for n, _ in everyone if n in chosen or n in added]
    return hosts, batch_units(hosts, group_of)


def cmd_rollout(cat: Catalog, a: argparse.Namespace) -> int:
    from . import rollout

    hosts, units = _rollout_units(a.inventory, a.limit)
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
    result = rollout.roll(
        hosts, a.batch, a.max_fail, run, say=lambda m: console.rule(m), units=units
    )
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
