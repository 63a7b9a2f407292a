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


def _router_cell(view: dict) -> str:
    """One server's place in each router: in and healthy, in but unhealthy, or out."""
    if not view:
        return "-"
    cells = []
    for name, w in view.items():
        text = "out" if not w["in"] else "in, healthy" if w["healthy"] else "in, unhealthy"
        colour = "green" if w["in"] and w["healthy"] else "red" if w["in"] else "yellow"
        cells.append(f"[{colour}]{text}[/{colour}]" + (f" ({name})" if len(view) > 1 else ""))
    return ", ".join(cells)


def _router_table(routers: list[dict]) -> Table:
    table = Table(title="router")
    for col in ("router", "server", "url", "in router", "health", "in flight"):
        table.add_column(col, overflow="fold")
    for r in routers:
        if r["error"]:
            table.add_row(r["router"], "-", r["url"], "-", f"[red]{r['error']}[/red]", "-")
            continue
        for w in r["workers"]:
            health = "-" if w["healthy"] is None else "healthy" if w["healthy"] else "unhealthy"
            table.add_row(
                r["router"],
                w["host"] or "[yellow](not in the inventory)[/yellow]",
                w["url"],
                "[green]in[/green]" if w["in"] else f"[yellow]{w['status']}[/yellow]",
                f"[{'green' if w['healthy'] else 'red'}]{health}[/]",
                "-" if w["load"] is None else str(w["load"]),
            )
    return table


def cmd_status(cat: Catalog, a: argparse.Namespace) -> int:
    from . import oncall
    from .router import fleet_plans, router_view

    plans = fleet_plans(_fleet(a.inventory), cat)
    routing = {p.host for p in plans if p.settings.router and not p.settings.recipe}
    servers = [(n, d) for n, d in _fleet(a.inventory, a.limit) if n not in routing]
    rows = [
        {**oncall.status_row(r), "role": "server"}
        for r in oncall.run_everywhere(servers, oncall.status_command())
    ]
    groups = oncall.group_rows(rows)
    routers = router_view(plans)
    for row in rows:
        row["router"] = {
            r["router"]: {k: w[k] for k in ("in", "status", "healthy")}
            for r in routers
            for w in r["workers"]
            if w["host"] == row["host"]
        }
    if a.json:
        hosts = rows + [{"host": r["router"], "role": "router", **r} for r in routers]
        # with serving groups: {"hosts": [...], "groups": [...]}; else the list as before
        print_json(hosts if not groups else {"hosts": hosts, "groups": groups})
    else:
        table = Table(title=f"llmfleet status: {a.inventory}")
        cols = ("host", "release", "recipe", "engine", "model", "unit", "uptime", "health")
        for col in (*cols, *(("router",) if routers else ())):
            table.add_column(col, overflow="fold")
        for r in rows:
            cell = (_router_cell(r["router"]),) if routers else ()
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
                    *cell,
                )
                continue
            health = r["health"] or "-"
            if r.get("group"):
                health = f"{health} ({r['group']} rank {r['rank']}, {r['group_role']})"
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
                *cell,
            )
        console.print(table)
        for g in groups:
            _print_group(g)
        if routers:
            console.print(_router_table(routers))
    serving = all(oncall.serving(r) for r in rows)
    return 0 if serving and all(r["ready"] for r in routers) else 1


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


def _rollout_units(a: argparse.Namespace, hosts: list[str]) -> tuple[list[str], list[list[str]]]:
    """The hosts to roll and their units: a serving group's members go together, and a
    ``--limit`` that names one member takes the whole group (said on stderr)."""
    from .grouplife import batch_units

    everyone = _fleet(a.inventory)
    group_of = {n: d.get("serve_group") for n, d in everyone}
    groups = {group_of[n] for n in hosts if group_of.get(n)}
    added = [n for n, g in group_of.items() if g in groups and n not in hosts]
    if added:
        err.print(f"rollout: whole serving groups go together; adding {', '.join(added)}")
    chosen = [n for n, _ in everyone if n in hosts or n in added]
    return chosen, batch_units(chosen, group_of)


def _serving(cat: Catalog, a: argparse.Namespace) -> tuple[list[str], list]:
    """The hosts a rollout deploys (router-only hosts serve nothing) and the fleet's plans
    with the rollout's ``--data`` applied, for the drain (``llmfleet/router.py``)."""
    from .router import fleet_plans

    data = dict(kv.partition("=")[::2] for kv in (a.data or []))
    plans = fleet_plans([(n, {**d, **data}) for n, d in _fleet(a.inventory)], cat)
    wanted = {n for n, _ in _fleet(a.inventory, a.limit)} if a.limit else None
    hosts = [
        p.host
        for p in plans
        if not (p.settings.router and not p.settings.recipe)
        and (wanted is None or p.host in wanted)
    ]
    return hosts, plans


def cmd_rollout(cat: Catalog, a: argparse.Namespace) -> int:
    from . import rollout
    from .router import fleet_drain

    hosts, plans = _serving(cat, a)
    hosts, units = _rollout_units(a, hosts)
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
    drain = None if a.no_drain else fleet_drain(plans, say=lambda m: console.print(f"[cyan]{m}"))
    hook = _bench_gate(cat, a, say) if a.bench_gate is not None else None
    max_fail = rollout.max_fail_of(a.max_fail, getattr(a, "fail_percent", None))
    result = rollout.roll(
        hosts, a.batch, max_fail, run, say=say, units=units, drain=drain, hook=hook
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
