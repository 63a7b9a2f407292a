"""On-call tasks across a fleet over SSH (fabric), in parallel, one line per host.

What runs where, logs, restarts and releases, for the engineer at 3 a.m.: no
deploy machinery, just one SSH round trip per host with the inventory's own
connection settings (host keys checked when the inventory says so), and a
clear row for a host that cannot be reached.
"""

from __future__ import annotations

import json
import shlex
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from . import fleetconfig
from .hostpaths import HEALTH_SCRIPT, RELEASES, UNIT_NAME
from .manifest import ReleaseManifest, ReleaseState, list_command
from .probe import MODELS_PY

# One round trip: the current release's manifest, the unit's state and uptime,
# and what the endpoint lists (asked with the server's own key, see probe.py).
STATUS_PY = (
    MODELS_PY
    + r"""
import os, subprocess, sys
unit, releases = sys.argv[1], sys.argv[2]
def show(*props):
    out = subprocess.run(["systemctl", "show", unit] + ["-p" + p for p in props],
                         capture_output=True, text=True).stdout
    return dict(l.split("=", 1) for l in out.splitlines() if "=" in l)
s = show("ActiveState", "SubState", "ActiveEnterTimestampMonotonic", "NRestarts", "MainPID")
cur = os.path.join(releases, "current")
rel = os.path.basename(os.readlink(cur)) if os.path.islink(cur) else None
manifest = {}
if rel:
    try:
        manifest = json.load(open(os.path.join(releases, rel, "manifest.json")))
    except (OSError, ValueError):
        pass
up = None
if s.get("ActiveState") == "active":
    since = int(s.get("ActiveEnterTimestampMonotonic") or 0) / 1e6
    up = round(float(open("/proc/uptime").read().split()[0]) - since)
served, health = None, "down"
try:
    served = models(manifest.get("port", 8000), manifest.get("api_key_env", "VLLM_API_KEY"))
    health = "serving" if manifest.get("served_name") in served else "wrong model"
except Exception as exc:
    health = "down (%s)" % type(exc).__name__
node = manifest.get("node") or {}
if node.get("role") == "worker":  # headless: no HTTP; judged by its link to rank 0
    import importlib.util
    spec = importlib.util.spec_from_file_location("health", sys.argv[3])
    try:
        h = importlib.util.module_from_spec(spec); spec.loader.exec_module(h)
        linked = h.resolve([r["address"] for r in node["rendezvous"]]) <= h.peers(unit)
    except Exception as exc:
        linked = None
    health = ("connected to rank 0" if linked else "NOT connected to rank 0"
              if s.get("ActiveState") == "active" else "down")
print(json.dumps({"release": rel, "manifest": manifest, "unit": s, "uptime_s": up,
                  "models": served, "health": health}))
"""
)


@dataclass
class HostResult:
    host: str
    ok: bool
    stdout: str = ""
    error: str = ""


def connection(name: str, data: dict[str, Any]):
    """A fabric Connection from pyinfra host data (hostname, user, key, port, known_hosts)."""
    import paramiko
    from fabric import Connection

    timeout = data.get("ssh_connect_timeout") or fleetconfig.connect_timeout()
    kwargs: dict[str, Any] = {"timeout": int(timeout)}
    if data.get("ssh_key"):
        kwargs["key_filename"] = data["ssh_key"]
    conn = Connection(
        str(data.get("ssh_hostname") or name),
        user=data.get("ssh_user"),
        port=int(data.get("ssh_port") or 22),
        connect_kwargs=kwargs,
    )
    if data.get("ssh_known_hosts_file"):
        conn.client.load_host_keys(data["ssh_known_hosts_file"])
    strict = str(data.get("ssh_strict_host_key_checking") or "").lower()
    if strict in ("yes", "true", "1"):
        conn.client.set_missing_host_key_policy(paramiko.RejectPolicy())
    return conn


def run_everywhere(
    hosts: list[tuple[str, dict[str, Any]]], command: str, timeout: int = 60
) -> list[HostResult]:
    """``command`` on every host in parallel; results in inventory order."""

    def one(item: tuple[str, dict[str, Any]]) -> HostResult:
        name, data = item
        try:
            with connection(name, data) as conn:
                res = conn.run(command, hide=True, warn=True, timeout=timeout)
            return HostResult(name, res.ok, res.stdout, res.stderr.strip())
        except Exception as exc:  # the row must say why, whatever it is
            return HostResult(name, False, error=f"unreachable: {type(exc).__name__}: {exc}")

    with ThreadPoolExecutor(max_workers=fleetconfig.parallel(len(hosts))) as pool:
        return list(pool.map(one, hosts))


def status_command() -> str:
    return f"python3 -c {shlex.quote(STATUS_PY)} {UNIT_NAME}.service {RELEASES} {HEALTH_SCRIPT}"


def status_row(result: HostResult) -> dict[str, Any]:
    """One row of ``llmfleet status``; unreachable hosts keep their reason."""
    if not result.stdout.strip():
        return {"host": result.host, "reachable": False, "error": result.error or "no output"}
    data = json.loads(result.stdout.strip().splitlines()[-1])
    m = ReleaseManifest.from_json(data["manifest"]) if data.get("manifest") else None
    unit = data.get("unit") or {}
    return {
        "host": result.host,
        "reachable": True,
        "release": data.get("release"),
        "recipe": m.recipe if m else None,
        "engine": (" ".join(m.packages) or None) if m else None,
        "model": m.model if m else None,
        "unit": f"{unit.get('ActiveState', '?')}/{unit.get('SubState', '?')}",
        "restarts": unit.get("NRestarts"),
        "uptime_s": data.get("uptime_s"),
        "health": data.get("health"),
        # a multi-node server's member: its group, rank and role (None: one node)
        "group": m.node.group if m and m.node else None,
        "rank": m.node.rank if m and m.node else None,
        "group_role": m.node.role if m and m.node else None,
    }


def serving(row: dict[str, Any]) -> bool:
    """A reachable host doing its part: a head serving, a worker linked to rank 0."""
    return bool(row.get("reachable")) and row.get("health") in ("serving", "connected to rank 0")


def group_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per serving group: every rank's host, role and state; healthy only when
    every member is (a head that serves while a worker is down is not)."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        if r.get("group"):
            groups.setdefault(r["group"], []).append(r)
    return [
        {
            "group": name,
            "healthy": all(serving(r) for r in members),
            "ranks": [
                {
                    "rank": r.get("rank"),
                    "host": r["host"],
                    "role": r.get("group_role"),
                    **{k: r.get(k) for k in ("unit", "health", "release")},
                }
                for r in sorted(members, key=lambda r: r.get("rank") or 0)
            ],
        }
        for name, members in groups.items()
    ]


def logs_command(lines: int) -> str:
    return f"journalctl -u {UNIT_NAME}.service -n {int(lines)} --no-pager -o short-iso"


def restart_command() -> str:
    return f"systemctl restart {UNIT_NAME}.service && systemctl is-active {UNIT_NAME}.service"


def releases_command() -> str:
    return list_command()


def release_rows(result: HostResult) -> list[dict[str, Any]]:
    """``llmfleet releases``: one row per release on the host, newest first."""
    import time

    state = ReleaseState.from_json(json.loads(result.stdout.strip().splitlines()[-1]))
    return [
        {
            "host": result.host,
            "release": m.id,
            "mark": state.mark(m.id),
            "created": time.strftime(
                "%Y-%m-%d %H:%M:%S", time.localtime(state.created.get(m.id, 0))
            ),
            "recipe": m.recipe,
            "model": m.model,
            "port": m.port,
            "runtime": m.runtime,
        }
        for m in state.newest_first()
    ]


def gpu_command() -> str:
    return (
        "nvidia-smi --query-gpu=index,name,utilization.gpu,memory.used,memory.total "
        "--format=csv,noheader 2>/dev/null || amd-smi list 2>/dev/null || "
        "npu-smi info 2>/dev/null || echo 'no accelerator tools on this host'"
    )
