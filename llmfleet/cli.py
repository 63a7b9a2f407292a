"""The ``llmfleet`` command: browse and render recipes, plan a fleet, run the lab.

Human output is rich tables; ``--json`` everywhere gives scripts a stable shape.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from rich.table import Table

from . import cli_top
from . import settings as schema
from .catalog import Catalog, load
from .cli_bench import add_parser as add_bench_parser
from .cli_fleet import cmd_oncall, cmd_releases, cmd_rollout, cmd_status
from .cli_lab import cmd_lab
from .errors import LlmfleetError, Problem, ValidationError
from .render import render
from .serveplan import build_serve_plan, weights_plan
from .settings import Settings, settings_from
from .terminal import console, err, print_json, raw
from .validate import HostPlan


def _epilog_set() -> str:
    """The --set keys, from the settings schema (docs/settings.md has every key)."""
    rows = [
        (name, f.metadata["doc"])
        for name, f in schema.schema().items()
        if schema.RENDER_KEY in f.metadata["deploys"] and name not in ("hardware", "recipe")
    ]
    rows += [(p + "NAME", doc) for p, (_, doc) in schema.PREFIXES.items()]
    return "keys (host data keys of the serve deploy):\n" + "\n".join(
        f"  {k:<18} {v}" for k, v in rows
    )


def parse_sets(pairs: list[str], host_name: str = "-") -> Settings:
    """``["port=8001", "flag.--x=1"]`` -> settings, checked like host data."""
    data: dict[str, str] = {}
    for pair in pairs:
        key, eq, value = pair.partition("=")
        if not eq or not key:
            raise ValidationError(
                [Problem(host_name, pair, "expected KEY=VALUE", fix="e.g. --set port=8001")]
            )
        data[key.strip()] = value
    return settings_from(data, host_name)


def cmd_recipes_list(cat: Catalog, a: argparse.Namespace) -> int:
    rows = [
        r
        for r in cat.recipes.values()
        if (not a.hardware or r.hardware == a.hardware) and (not a.engine or r.engine == a.engine)
    ]
    if a.json:
        print_json(
            [
                {
                    "id": r.id,
                    "hardware": r.hardware,
                    "engine": r.engine,
                    "workload": list(r.workload),
                    "nodes": r.nodes,
                    "model": r.model["repo"],
                    "source": r.source,
                }
                for r in rows
            ]
        )
        return 0
    table = Table(title=f"{len(rows)} recipes", show_lines=False)
    for col in ("id", "hardware", "engine", "workload", "model", "source"):
        table.add_column(col, overflow="fold")
    for r in rows:
        nodes = f" x{r.nodes}" if r.nodes > 1 else ""
        table.add_row(
            r.id,
            r.hardware + nodes,
            r.engine,
            ", ".join(r.workload),
            r.model["repo"],
            f"{r.source['seed'][:3]} {r.source['section']}",
        )
    console.print(table)
    return 0


def cmd_recipes_show(cat: Catalog, a: argparse.Namespace) -> int:
    r = cat.recipe(a.id)
    rendered = render(cat, r, Settings())
    info = {
        "id": r.id,
        "title": r.title,
        "source": r.source,
        "hardware": r.hardware,
        "engine": r.engine,
        "model": r.model,
        "workload": list(r.workload),
        "nodes": r.nodes,
        "multinode_form": r.multinode_form if r.nodes > 1 else None,
        "parallelism": rendered.parallel.describe(),
        "argv": rendered.argv,
        "env": r.env,
        "unset_env": list(r.unset_env),
        "env_scripts": list(r.env_scripts),
        "sysctl": r.sysctl,
        "cpu_governor": r.cpu_governor,
        "container": r.container,
        "benchmark": r.benchmark,
        "overlays": sorted(o.id for o in cat.overlays.values() if r.engine in o.engines),
    }
    if a.json:
        print_json(info)
        return 0
    console.print(f"[bold]{r.id}[/bold]: {r.title}")
    console.print(f"source: {r.source['seed']} / {r.source['section']}")
    table = Table(show_header=False)
    table.add_column("key", style="cyan")
    table.add_column("value", overflow="fold")
    for key in (
        "hardware",
        "engine",
        "model",
        "workload",
        "nodes",
        "multinode_form",
        "parallelism",
        "env",
        "unset_env",
        "env_scripts",
        "sysctl",
        "cpu_governor",
        "container",
        "benchmark",
        "overlays",
    ):
        value = info[key]
        if value in (None, {}, [], ()):
            continue
        table.add_row(key, value if isinstance(value, str) else json.dumps(value))
    table.add_row("command", " ".join(rendered.argv))
    console.print(table)
    return 0


def cmd_recipes_render(cat: Catalog, a: argparse.Namespace) -> int:
    r = cat.recipe(a.id)
    s = parse_sets(a.set or [], host_name="render")
    if a.rank is not None:
        s = replace(s, node_rank=a.rank)
    rendered = render(cat, r, s, "render")
    if a.json:
        print_json(rendered.public())
        return 0
    if a.unit:
        # the deploy's own plan builder; only the commit is unknown without an inventory
        commit = rendered.revision
        if not re.fullmatch(r"[0-9a-f]{40}", commit):
            err.print(
                f"note: the model path shows revision {commit!r}; a deploy pins it to a "
                "commit first (llmfleet plan INVENTORY --host HOST --unit prints that unit)",
                highlight=False,
            )
        image = rendered.docker["image"] if rendered.docker else None
        if image:
            err.print(
                f"note: the unit shows image {image!r}; a deploy pins it to its digest",
                highlight=False,
            )
        plan = build_serve_plan(
            cat,
            "render",
            s,
            r,
            weights_plan(s, rendered.model_repo, commit, None, False),
            image=image,
        )
        raw(plan.unit)
        raw(plan.env)
        return 0
    console.print(" \\\n  ".join(rendered.argv), markup=False, highlight=False)
    for key, value in rendered.env.items():
        console.print(f"{key}={value}", markup=False, highlight=False)
    return 0


def cmd_settings(cat: Catalog, a: argparse.Namespace) -> int:
    """Every host-data key: type, default, the deploys that read it, what it does."""
    if a.json:
        print_json(schema.schema_json())
    elif a.markdown:
        raw(schema.schema_markdown())
    else:
        table = Table(title="host and group data keys (docs/settings.md)")
        for col in ("key", "type", "default", "deploys", "what"):
            table.add_column(col, overflow="fold")
        for row in schema.schema_json():
            default = row["default"]
            table.add_row(
                row["key"],
                row["type"],
                "-" if default in (None, [], {}) else schema.text(default),
                ", ".join(row["deploys"]),
                row["doc"] + (f" ({', '.join(row['choices'])})" if row["choices"] else ""),
            )
        console.print(table)
        console.print(
            "also: flag.NAME, env.NAME, overlay.ID; pyinfra's own keys (ssh_*, _sudo, ...) "
            f"pass through; keys of your own go under {schema.USER_PREFIX}",
            highlight=False,
        )
    return 0


def cmd_plan(cat: Catalog, a: argparse.Namespace) -> int:
    from .plan import (
        load_inventory_data,
        pinned_commit,
        pinned_image,
        plan_inventory,
        plan_json,
        serve_plan,
    )

    plans = plan_inventory(cat, load_inventory_data(a.inventory))
    if a.host:
        plans = [p for p in plans if p.host == a.host]
        if not plans:
            raise LlmfleetError(f"--host {a.host}: no such host in {a.inventory}")
    if a.unit:
        if not a.host:
            raise LlmfleetError("--unit needs --host HOST (one unit file at a time)")
        (p,) = plans
        if not p.ok:
            raise ValidationError(p.problems)
        # the commit is resolved on the control node, as the deploy does
        raw(serve_plan(cat, p, pinned_commit(p), image=pinned_image(p)).unit)
        return 0
    if a.json:
        print_json(plan_json(plans))
    else:
        table = Table(title=f"plan for {a.inventory} (nothing was connected to)")
        for col in ("host", "hardware", "recipe", "parallelism", "memory / device", "status"):
            table.add_column(col, overflow="fold")
        for p in plans:
            fit = p.fit
            mem = (
                "-"
                if fit is None
                else (
                    f"{fit.per_device_gb} of {fit.usable_gb} GB " + ("ok" if fit.fits else "NO FIT")
                )
            )
            status = "[green]ok[/green]" if p.ok else "[red]error[/red]"
            warn = sum(1 for x in p.problems if x.severity == "warning")
            table.add_row(
                p.host,
                p.hardware or "-",
                p.recipe or "-",
                p.rendered.parallel.describe() if p.rendered else "-",
                mem,
                status + (f" ({warn} warning)" if warn else ""),
            )
        console.print(table)
        for group_table in _group_tables(plans):
            console.print(group_table)
        for p in plans:
            for x in p.problems:
                colour = "red" if x.severity == "error" else "yellow"
                err.print(f"[{colour}]{x.severity}[/{colour}] {x}", highlight=False)
    return 0 if all(p.ok for p in plans) else 2


def _group_tables(plans: list[HostPlan]) -> list[Table]:
    """One table per multi-node server: who is which rank and role, and the rendezvous
    ports rank 0 listens on and the workers connect to."""
    status = {p.host: p.ok for p in plans}
    groups = {p.group.name: p.group for p in plans if p.group}
    tables = []
    for g in groups.values():
        table = Table(title=f"serve group {g.name}: {g.recipe} ({g.form}, master {g.master_addr})")
        for col in ("rank", "host", "role", "address", "rendezvous", "status"):
            table.add_column(col, overflow="fold")
        for m in g.members:
            ports = ", ".join(
                f"listens on {r.port} ({r.flag})"
                if m.rank == 0
                else f"connects to {r.address}:{r.port}"
                for r in g.rendezvous
            )
            ok = status.get(m.host)
            shown = "-" if ok is None else "[green]ok[/green]" if ok else "[red]error[/red]"
            table.add_row(str(m.rank), m.host, m.role, m.address, ports, shown)
        tables.append(table)
    return tables


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="llmfleet",
        description="Recipes from the vendor guides, rendered flag for flag, validated before "
        "any host is touched. Deploys run through pyinfra: "
        "pyinfra inventories/lab.py deploys/serve.py",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = p.add_subparsers(dest="cmd", required=True, metavar="COMMAND")

    rec = sub.add_parser("recipes", help="list, show and render the recipe catalog")
    rsub = rec.add_subparsers(dest="recipes_cmd", required=True, metavar="ACTION")
    ls = rsub.add_parser("list", help="every recipe: id, hardware, engine, workload, source")
    ls.add_argument("--json", action="store_true", help="machine-readable output")
    ls.add_argument("--hardware", help="only recipes for this hardware profile")
    ls.add_argument("--engine", choices=sorted(load().engines), help="only this engine")
    ls.set_defaults(func=cmd_recipes_list)
    show = rsub.add_parser("show", help="one recipe in full, with its source in the guides")
    show.add_argument("id")
    show.add_argument("--json", action="store_true")
    show.set_defaults(func=cmd_recipes_show)
    rend = rsub.add_parser(
        "render",
        help="the engine command line, environment and docker options",
        epilog=_epilog_set(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    rend.add_argument("id")
    rend.add_argument(
        "--set",
        action="append",
        metavar="KEY=VALUE",
        help="override a deployment value, flag, env var or overlay (repeatable)",
    )
    rend.add_argument("--rank", type=int, default=None, help="node rank for multi-node recipes")
    rend.add_argument(
        "--json", action="store_true", help='print {"id","engine","argv","env","docker","sysctl"}'
    )
    rend.add_argument("--unit", action="store_true", help="print the systemd unit and env file")
    rend.set_defaults(func=cmd_recipes_render)

    plan = sub.add_parser(
        "plan", help="per host: recipe, parallelism, memory fit, warnings (no connection)"
    )
    plan.add_argument("inventory", help="a pyinfra inventory file, e.g. inventories/lambda.py")
    plan.add_argument("--json", action="store_true")
    plan.add_argument("--host", metavar="HOST", help="only this host")
    plan.add_argument(
        "--unit",
        action="store_true",
        help="with --host: print the systemd unit the serve deploy writes (resolves the "
        "model revision on this machine, as the deploy does)",
    )
    plan.set_defaults(func=cmd_plan)

    keys = sub.add_parser("settings", help="every host/group data key: type, default, doc")
    keys.add_argument("--json", action="store_true")
    keys.add_argument("--markdown", action="store_true", help="the table of docs/settings.md")
    keys.set_defaults(func=cmd_settings)

    st = sub.add_parser(
        "status", help="per host: current release, engine, model, unit state, uptime, health"
    )
    st.add_argument("inventory", help="a pyinfra inventory file, e.g. inventories/lab.py")
    st.add_argument("--json", action="store_true")
    st.add_argument("--limit", action="append", metavar="HOST", help="only this host")
    st.set_defaults(func=cmd_status)
    for name, text in (
        ("logs", "the server's last journal lines on every host"),
        ("restart", "restart the server on every host (or --limit HOST)"),
        ("releases", "the releases kept on every host, newest first, current and previous marked"),
        ("gpus", "accelerator status on every host (nvidia-smi / amd-smi / npu-smi)"),
    ):
        sp = sub.add_parser(name, help=text)
        sp.add_argument("inventory", help="a pyinfra inventory file")
        sp.add_argument("--limit", action="append", metavar="HOST", help="only this host")
        if name == "logs":
            sp.add_argument("-n", "--lines", type=int, default=50)
        if name == "releases":
            sp.add_argument("--json", action="store_true")
        sp.set_defaults(func=cmd_releases if name == "releases" else cmd_oncall)

    cli_top.add_parser(sub)

    ro = sub.add_parser(
        "rollout",
        help="deploy in batches, stop when too many hosts fail (health-gated); each batch "
        "leaves the fleet's router first and goes back once healthy",
    )
    ro.add_argument("inventory")
    ro.add_argument("deploy", nargs="?", default="deploys/serve.py")
    ro.add_argument("--batch", default="1", help="hosts per batch: a count or N%% (default 1)")
    fail = ro.add_mutually_exclusive_group()
    fail.add_argument("--max-fail", default="0", help="failed hosts tolerated: count or N%%")
    fail.add_argument(
        "--fail-percent",
        type=float,
        metavar="N",
        help="the same as --max-fail N%%: the share of the fleet that may fail, over the whole "
        "rollout; never passed to pyinfra, which would stop a batch's hosts mid-deploy",
    )
    ro.add_argument("--data", action="append", metavar="KEY=VALUE", help="passed to pyinfra")
    ro.add_argument("--limit", action="append", metavar="HOST", help="only this host")
    ro.add_argument("--dry", action="store_true", help="show what would change, with diffs")
    ro.add_argument(
        "--no-drain",
        action="store_true",
        help="restart hosts while the router still sends them requests (no router: no drain)",
    )
    ro.add_argument(
        "--bench-gate",
        type=float,
        metavar="PCT",
        help="benchmark each batch after health (llmfleet bench's workload); a host whose "
        "output tok/s or p99 TPOT is worse than its previous release's by more than PCT "
        "percent is reverted and counts as failed",
    )
    ro.add_argument("--bench-results", type=Path, help="results directory of the gate")
    ro.add_argument(
        "--bench-repeat",
        type=int,
        default=3,
        metavar="N",
        help="gate benchmarks per host: the best of N (default 3)",
    )
    ro.set_defaults(func=cmd_rollout)
    add_bench_parser(sub)

    lab = sub.add_parser("lab", help="the local lab: systemd-nspawn hosts reachable over SSH")
    lsub = lab.add_subparsers(dest="lab_cmd", required=True, metavar="ACTION")
    up = lsub.add_parser("up", help="build (cached) and boot the lab hosts and side services")
    up.add_argument("--hosts", type=int, default=2, help="number of hosts (default 2)")
    up.add_argument(
        "--docker",
        action="store_true",
        help="hosts that can run docker containers, the lab's outside registry and engine "
        "image (docs/lab-docker.md)",
    )
    up.add_argument(
        "--monitor",
        action="store_true",
        help="the Debian mirror on every host (Prometheus, the node exporter) and a STAND-IN "
        "accelerator exporter on the last host (docs/observability.md)",
    )
    up.add_argument(
        "--light",
        type=int,
        metavar="N",
        help="N light hosts instead (systemd and sshd only, each SSH session logged): the "
        "control-plane benchmark's fleet, served by inventories/lab_light.py (docs/scale.md)",
    )
    up.add_argument("--json", action="store_true")
    down = lsub.add_parser("down", help="stop and remove everything the lab made")
    down.add_argument("--purge", action="store_true", help="also drop the cached rootfs/wheels")
    st = lsub.add_parser("status", help="hosts, addresses, SSH reachability")
    st.add_argument("--json", action="store_true")
    chat = lsub.add_parser("chat", help="send one chat completion to every lab host's server")
    chat.add_argument("--prompt", default="Say hello to the fleet.")
    chat.add_argument("--model", default="tiny", help="served model name (default tiny)")
    chat.add_argument("--port", type=int, default=8000)
    chat.add_argument("--max-tokens", type=int, default=16)
    for sp in (up, down, st, chat):
        sp.set_defaults(func=cmd_lab)
    return p


def main(argv: list[str] | None = None) -> int:
    try:
        parser = build_parser()  # reads the catalog (engine names for --engine)
    except LlmfleetError as exc:
        err.print(f"[red]error[/red] {exc}", highlight=False)
        return 2
    a = parser.parse_args(argv)
    func: Callable[[Catalog, argparse.Namespace], int] = a.func
    try:
        return func(load(), a)
    except ValidationError as exc:
        for problem in exc.problems:
            err.print(f"[red]error[/red] {problem}", highlight=False)
        return 2
    except LlmfleetError as exc:
        err.print(f"[red]error[/red] {exc}", highlight=False)
        return 2


if __name__ == "__main__":
    sys.exit(main())
