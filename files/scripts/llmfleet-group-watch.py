#!/usr/bin/env python3
"""Group watchdog: restart this member's engine when its multi-node server broke.

systemd restarts a crashed engine on its own host (Restart=always), but it cannot
bind units across hosts, and a multi-node engine does not re-form by itself: a
headless worker may sit waiting on a head that restarted, and a head keeps
answering /health while one of its workers is dead.  This runs on every member of
a serving group (llmfleet-group-watch.service) and watches the group's TCP
connections, which every form has for as long as the group lives:

- on a worker: an established connection of its engine to rank 0's address;
- on the head: an established connection of its engine with every worker's address.

(Any port: vLLM's data-parallel ranks meet on the rendezvous port and then talk over
ports the engine picks; the connections are matched to the engine unit's processes.)

Once a run of the engine unit (one systemd InvocationID) has been seen whole, a
connection missing for ``--grace`` seconds restarts the unit, which re-forms the
group (the head's restart drops the workers' connections, so they restart and
join it).  A run that was never whole is left alone: start-up waiting is the
engine's own business, bounded by its ready timeout and judged by the deploy's
health gate.  What to watch comes from the env file's ``LLMFLEET_GROUP_*``
variables, which every release of a group member carries, so it always matches
the release that runs; without them (a one-node server) the watchdog idles.
Every action is one journal line.  Standard library only.
"""

from __future__ import annotations

import argparse
import importlib.util
import subprocess
import sys
import time
from pathlib import Path


def _health_module():
    """The health script's /proc/net/tcp reader (installed beside this script)."""
    path = Path(__file__).with_name("llmfleet-health.py")
    spec = importlib.util.spec_from_file_location("llmfleet_health", path)
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def read_env(path: str) -> dict[str, str]:
    try:
        lines = Path(path).read_text().splitlines()
    except OSError:
        return {}
    pairs = (line.split("=", 1) for line in lines if "=" in line and not line.startswith("#"))
    return {k.strip(): v.strip().strip("'\"") for k, v in pairs}


def unit_run(unit: str) -> tuple[str, str]:
    """(ActiveState, InvocationID): one run of the unit, restarts make a new one."""
    out = subprocess.run(
        ["systemctl", "show", unit, "-p", "ActiveState", "-p", "InvocationID"],
        capture_output=True,
        text=True,
    ).stdout
    props = dict(line.split("=", 1) for line in out.splitlines() if "=" in line)
    return props.get("ActiveState", "unknown"), props.get("InvocationID", "")


def connections(health, env: dict[str, str], unit: str) -> tuple[set, set]:
    """(wanted, present) peer addresses for this member's role: rank 0's for a worker,
    every worker's for the head; both empty when the env names no group."""
    role = env.get("LLMFLEET_GROUP_ROLE")
    if role == "worker":
        names = [e for e in env.get("LLMFLEET_GROUP_RENDEZVOUS", "").split(",") if e]
    elif role == "head":
        names = [w for w in env.get("LLMFLEET_GROUP_WORKERS", "").split(",") if w]
    else:
        names = []
    if not names:
        return set(), set()
    wanted = health.resolve(names)
    return wanted, health.peers(unit) & wanted


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--unit", default="llmfleet-serve.service")
    p.add_argument("--env-file", default="/etc/llmfleet/serve.env")
    p.add_argument("--grace", type=float, default=10, help="seconds a connection may be gone")
    p.add_argument("--interval", type=float, default=1)
    a = p.parse_args()
    health = _health_module()
    whole: str | None = None  # the InvocationID last seen with its group whole
    lost_since: float | None = None
    while True:
        time.sleep(a.interval)
        state, run = unit_run(a.unit)
        wanted, present = connections(health, read_env(a.env_file), a.unit)
        if state != "active" or not wanted:
            lost_since = None
            continue
        if present == wanted:
            if whole != run:
                print(f"group whole: {len(wanted)} connection(s) of run {run[:8]}", flush=True)
            whole, lost_since = run, None
            continue
        if whole != run:  # never whole in this run: still starting
            continue
        lost_since = lost_since or time.monotonic()
        if time.monotonic() - lost_since >= a.grace:
            gone = ", ".join(sorted(wanted - present))
            print(
                f"group broken: {gone} gone for {a.grace:.0f}s; restarting {a.unit} "
                "so the group re-forms",
                flush=True,
            )
            subprocess.run(["systemctl", "restart", a.unit], check=False)
            whole, lost_since = None, None


if __name__ == "__main__":
    sys.exit(main())
