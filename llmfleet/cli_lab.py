"""``llmfleet lab up|down|status|chat``: the local lab from the command line."""

from __future__ import annotations

import argparse

from rich.table import Table

from .catalog import Catalog
from .terminal import console, print_json


def _lab_table(rows: list[dict]) -> Table:
    table = Table(title="llmfleet lab")
    cols = ("name", "address", "running", "ssh", "cgroup")
    for col in cols:
        table.add_column(col)
    for row in rows:
        table.add_row(*(str(row.get(c, "-")) for c in cols))
    return table


def cmd_lab(cat: Catalog, a: argparse.Namespace) -> int:
    from .lab import lab

    if a.lab_cmd == "up":
        light = getattr(a, "light", None)
        state = lab.up(
            hosts=light or a.hosts, docker=a.docker, monitor=a.monitor, light=bool(light)
        )
        if a.json:
            print_json(state)
            return 0
        console.print(_lab_table(lab.status()))
        for key, value in sorted((state.get("services") or {}).items()):
            if key.endswith("_url"):
                console.print(f"  {key}: {value}", highlight=False)
        services = state.get("services") or {}
        if a.docker:
            console.print(
                f"  outside registry: {services.get('registry')}, image "
                f"{services.get('image')}@{services.get('image_digest')}",
                highlight=False,
            )
        if a.docker:
            nxt = (
                "pyinfra inventories/lab_docker.py deploys/registry.py --limit lab1\n"
                "      pyinfra inventories/lab_docker.py deploys/serve.py"
            )
        elif light:
            nxt = "pyinfra inventories/lab_light.py deploys/serve.py"
        elif a.monitor:
            nxt = (
                "pyinfra inventories/lab_monitor.py deploys/serve.py\n"
                "      pyinfra inventories/lab_monitor.py deploys/monitor.py\n"
                "      llmfleet top inventories/lab_monitor.py"
            )
        else:
            nxt = "pyinfra inventories/lab.py deploys/serve.py"
        console.print(
            f"SSH: ssh -F {state['ssh_config']} {state['hosts'][0]['name']}\nnext: {nxt}",
            highlight=False,
        )
    elif a.lab_cmd == "down":
        lab.down(purge=a.purge)
    elif a.lab_cmd == "chat":
        return _lab_chat(a)
    else:
        rows = lab.status()
        print_json(rows) if a.json else console.print(_lab_table(rows))
        # a running host that shares cgroups with another is not a usable lab host
        return 1 if any(r["running"] and r["cgroup"] != "isolated" for r in rows) else 0
    return 0


def _lab_chat(a: argparse.Namespace) -> int:
    """One chat completion per lab host, from the control machine, as a user would."""
    import time

    import requests

    from .lab.inventory import lab_hosts

    table = Table(title=f"chat: {a.prompt!r}")
    for col in ("host", "endpoint", "reply", "tokens", "seconds"):
        table.add_column(col, overflow="fold")
    failed = 0
    for name, data in lab_hosts():
        url = f"http://{data['ssh_hostname']}:{a.port}/v1/chat/completions"
        body = {
            "model": a.model,
            "max_tokens": a.max_tokens,
            "messages": [{"role": "user", "content": a.prompt}],
        }
        start = time.monotonic()
        try:
            resp = requests.post(url, json=body, timeout=120)
            resp.raise_for_status()
            reply = resp.json()
            text = reply["choices"][0]["message"].get("content") or ""
            tokens = str(reply.get("usage", {}).get("completion_tokens", "?"))
            table.add_row(name, url, repr(text), tokens, f"{time.monotonic() - start:.2f}")
        except (requests.RequestException, KeyError, ValueError) as exc:
            failed += 1
            table.add_row(name, url, f"[red]{exc}[/red]", "-", "-")
    console.print(table)
    return 1 if failed else 0
