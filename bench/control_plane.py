#!/usr/bin/env python3
"""Benchmark: what the control plane costs per host, from 1 host to 64.

For each fleet size N (``--sizes``, default 1,4,16,32,64) on the lab's light hosts
(``llmfleet lab up --light N``: systemd and sshd only, the STAND-IN stub engine as
the served "engine", so what is measured is the toolkit, not vLLM), one run:

1. takes the lab lock (``--lock``, the agents' lab lock), brings a fresh light lab
   of N hosts up (``lab down`` first, so the first run is a first run);
2. baseline: ``pyinfra inventories/lab_light.py fact server.Os``;
3. ``deploys/serve.py``: a first run, then a no-op re-run;
4. ``deploys/onboard.py``: a first run, then a no-op re-run;
5. ``llmfleet status`` and ``llmfleet plan`` on the same inventory;
6. per host memory (RSS of every process in its network namespace, and the drop
   in the machine's MemAvailable with the N hosts up and serving), then
   ``lab down`` and the lock is released before the next size.

Each step: wall time, control-node CPU seconds (user + system of the child, i.e.
pyinfra or llmfleet, SSH included: pyinfra's SSH is paramiko, in-process), and
SSH commands per host **counted on the hosts**: a light host's sshd logs every
session at VERBOSE to a file read from the control side ("Starting session:" is
one command or one file transfer; "Accepted publickey" one connection).

Ratios printed: no-op serve / bare fact run (same hosts, same run), the N-host
no-op wall time / the 1-host one, and whether SSH commands per host stay flat.

Run from the repository root, as root, with no outer lab lock (the benchmark
takes and releases it per size; ``--no-lock`` if you already hold it)::

    python3 bench/control_plane.py [--sizes 1,4,16,32,64] [--out bench/results-control-plane.txt]
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import os
import platform
import re
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from llmfleet.lab import cgroups, network  # noqa: E402
from llmfleet.lab import hosts as lab_hosts  # noqa: E402
from llmfleet.lab.state import load_state  # noqa: E402

INVENTORY = "inventories/lab_light.py"
LOCK = "/tmp/llmfleet-lab-agents.lock"
PY = sys.executable


def env() -> dict[str, str]:
    """This checkout first on the path (not an installed llmfleet)."""
    return {**os.environ, "PYTHONPATH": f"{ROOT}:{os.environ.get('PYTHONPATH', '')}"}


@contextlib.contextmanager
def lab_lock(path: str | None) -> Iterator[None]:
    if not path:
        yield
        return
    with open(path, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def lab(*args: str, log: Path) -> None:
    with open(log, "a") as fh:
        subprocess.run(
            [PY, "-m", "llmfleet", "lab", *args],
            cwd=ROOT,
            env=env(),
            stdout=fh,
            stderr=fh,
            check=True,
        )


def hosts_cpu_s() -> float:
    """CPU seconds used so far by every lab host (its cgroup subtree's cpuacct, or
    cpu.stat on cgroup2): the host side of a step, on the same 2 cores."""
    state = load_state() or {"hosts": []}
    total = 0.0
    for h in state["hosts"]:
        subtree = lab_hosts.subtree_of(h)
        for key, path in subtree.items():
            base = cgroups.fs_path(key, path)
            if base is None:
                continue
            if "cpuacct" in key.split(",") and (base / "cpuacct.usage").is_file():
                total += int((base / "cpuacct.usage").read_text()) / 1e9
                break
            if key == cgroups.UNIFIED and (base / "cpu.stat").is_file():
                stat = dict(line.split() for line in (base / "cpu.stat").read_text().splitlines())
                total += int(stat.get("usage_usec", 0)) / 1e6
                break
    return total


def ssh_counts() -> dict[str, dict[str, int]]:
    state = load_state() or {"hosts": []}
    return {h["name"]: lab_hosts.ssh_counts(h) for h in state["hosts"]}


# pyinfra's results table: operations run, changed ("-": none), errors, no change
TOTAL = re.compile(r"Grand total\s+(\d+)\s+(\S+)\s+(\S+)\s+(\S+)")


def measure(name: str, argv: list[str], logdir: Path) -> dict:
    """Run one control-plane command; wall, CPU, SSH sessions/logins per host."""
    before = ssh_counts()
    hcpu0 = hosts_cpu_s()
    results = logdir / f"{name}.results.json"
    run_env = {**env(), "LLMFLEET_RESULTS": str(results)}
    ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.monotonic()
    proc = subprocess.run(argv, cwd=ROOT, env=run_env, capture_output=True, text=True)
    wall = time.monotonic() - t0
    ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    after = ssh_counts()
    hosts_cpu = hosts_cpu_s() - hcpu0
    out = proc.stdout + proc.stderr
    (logdir / f"{name}.log").write_text(out)
    sessions = [after[h]["sessions"] - before.get(h, {}).get("sessions", 0) for h in after]
    logins = [after[h]["logins"] - before.get(h, {}).get("logins", 0) for h in after]
    statuses: dict[str, int] = {}
    quiet = 0  # hosts reported "already serving (no change, not restarted)"
    if results.is_file():
        for row in json.loads(results.read_text()).values():
            statuses[row["status"]] = statuses.get(row["status"], 0) + 1
            quiet += row["detail"].startswith("already serving")
    return {
        "step": name,
        "rc": proc.returncode,
        "wall_s": round(wall, 2),
        "cpu_s": round((ru1.ru_utime - ru0.ru_utime) + (ru1.ru_stime - ru0.ru_stime), 2),
        "hosts_cpu_s": round(hosts_cpu, 2),
        "sessions_min": min(sessions, default=0),
        "sessions_max": max(sessions, default=0),
        "sessions_per_host": round(sum(sessions) / max(len(sessions), 1), 2),
        "logins_per_host": round(sum(logins) / max(len(logins), 1), 2),
        "changed": changed(out),
        "statuses": statuses,
        "quiet": quiet,
    }


def changed(out: str) -> int:
    """Operations that changed something (0 also when no operation ran at all)."""
    m = TOTAL.search(out)
    return 0 if not m or m.group(2) == "-" else int(m.group(2))


def mem_available() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) * 1024
    return 0


def host_rss(name: str) -> int:
    """Bytes of RSS of every process in the host's network namespace (its systemd,
    journald, sshd and the stub engine)."""
    out = subprocess.run(
        ["ip", "netns", "pids", network.netns_name(name)], capture_output=True, text=True
    ).stdout
    total = 0
    for pid in out.split():
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
    return total


def one_size(n: int, logdir: Path, lock: str | None) -> dict:
    pyinfra = ["pyinfra", "-y", INVENTORY]
    steps = [
        ("fact", [*pyinfra, "fact", "server.Os"]),
        ("serve_first", [*pyinfra, "deploys/serve.py"]),
        ("serve_noop", [*pyinfra, "deploys/serve.py"]),
        ("onboard_first", [*pyinfra, "deploys/onboard.py"]),
        ("onboard_noop", [*pyinfra, "deploys/onboard.py"]),
        ("status", [PY, "-m", "llmfleet", "status", INVENTORY, "--json"]),
        ("plan", [PY, "-m", "llmfleet", "plan", INVENTORY]),
        ("fact_again", [*pyinfra, "fact", "server.Os"]),
    ]
    d = logdir / f"n{n}"
    d.mkdir(parents=True, exist_ok=True)
    with lab_lock(lock):
        lab("down", log=d / "lab.log")
        free0 = mem_available()
        t0 = time.monotonic()
        lab("up", "--light", str(n), log=d / "lab.log")
        row: dict = {"hosts": n, "lab_up_s": round(time.monotonic() - t0, 1), "steps": {}}
        try:
            for name, argv in steps:
                row["steps"][name] = measure(name, argv, d)
                print(f"  n={n} {name}: {json.dumps(row['steps'][name])}", flush=True)
                if name == "serve_first":
                    state = load_state() or {"hosts": []}
                    rss = [host_rss(h["name"]) for h in state["hosts"]]
                    row["rss_per_host_mb"] = round(sum(rss) / len(rss) / 2**20, 1)
                    row["mem_used_per_host_mb"] = round((free0 - mem_available()) / n / 2**20, 1)
        finally:
            lab("down", log=d / "lab.log")
    return row


def table(rows: list[dict]) -> str:
    base = next((r for r in rows if r["hosts"] == 1), rows[0])
    b_noop = base["steps"]["serve_noop"]["wall_s"]
    head = (
        f"{'hosts':>5} {'fact s':>7} {'serve 1st':>9} {'serve no-op':>11} {'onb 1st':>8} "
        f"{'onb no-op':>9} {'status':>7} {'plan':>6} {'cpu no-op':>9} {'cmds/host':>9} "
        f"{'fact cmds':>9} {'no-op/fact':>10} {'no-op/1-host':>12} {'RSS/host':>8}"
    )
    lines = [head, "-" * len(head)]
    for r in rows:
        s = r["steps"]
        noop = s["serve_noop"]
        cmds = (
            f"{noop['sessions_min']}"
            if noop["sessions_min"] == noop["sessions_max"]
            else f"{noop['sessions_min']}-{noop['sessions_max']}"
        )
        lines.append(
            f"{r['hosts']:>5} {s['fact']['wall_s']:>7.1f} {s['serve_first']['wall_s']:>9.1f} "
            f"{noop['wall_s']:>11.1f} {s['onboard_first']['wall_s']:>8.1f} "
            f"{s['onboard_noop']['wall_s']:>9.1f} {s['status']['wall_s']:>7.1f} "
            f"{s['plan']['wall_s']:>6.1f} {noop['cpu_s']:>9.1f} {cmds:>9} "
            f"{s['fact']['sessions_per_host']:>9} "
            f"{noop['wall_s'] / s['fact']['wall_s']:>10.2f} {noop['wall_s'] / b_noop:>12.2f} "
            f"{r.get('rss_per_host_mb', 0):>6.0f}MB"
        )
    return "\n".join(lines)


def markdown(rows: list[dict]) -> str:
    """The table for the README and docs/scale.md."""
    base = next((r for r in rows if r["hosts"] == 1), rows[0])
    lines = [
        "| hosts | fact (baseline) | serve first | serve no-op | no-op / fact | no-op / 1 host "
        "| SSH cmds/host no-op (first) | onboard first / no-op | status | plan "
        "| CPU no-op: control / hosts "
        "| RSS/host |",
        "|" + "---|" * 12,
    ]
    for r in rows:
        s = r["steps"]
        noop, fact = s["serve_noop"], s["fact"]
        cmds = (
            f"{noop['sessions_min']}"
            if noop["sessions_min"] == noop["sessions_max"]
            else f"{noop['sessions_min']}-{noop['sessions_max']}"
        )
        lines.append(
            f"| {r['hosts']} | {fact['wall_s']:.2f} s | {s['serve_first']['wall_s']:.1f} s "
            f"| {noop['wall_s']:.2f} s | {noop['wall_s'] / fact['wall_s']:.2f} "
            f"| {noop['wall_s'] / base['steps']['serve_noop']['wall_s']:.2f} "
            f"| {cmds} ({s['serve_first']['sessions_per_host']:g}) "
            f"| {s['onboard_first']['wall_s']:.2f} / {s['onboard_noop']['wall_s']:.2f} s "
            f"| {s['status']['wall_s']:.2f} s | {s['plan']['wall_s']:.2f} s "
            f"| {noop['cpu_s']:.2f} / {noop.get('hosts_cpu_s', 0):.2f} s "
            f"| {r.get('rss_per_host_mb', 0):.0f} MB |"
        )
    return "\n".join(lines)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--sizes", default="1,4,16,32,64")
    p.add_argument("--out", default="bench/results-control-plane.txt")
    p.add_argument("--lock", default=LOCK, help="lab lock taken per size")
    p.add_argument("--no-lock", action="store_true", help="the caller holds the lab lock")
    p.add_argument(
        "--with-rows",
        metavar="ROWS_JSON",
        help="rows.json of an earlier run of the same code, for sizes this run skips",
    )
    a = p.parse_args()
    sizes = [int(x) for x in a.sizes.split(",")]
    logdir = Path(tempfile.mkdtemp(prefix="llmfleet-control-plane-"))
    print(f"logs: {logdir}", flush=True)
    rows = json.loads(Path(a.with_rows).read_text()) if a.with_rows else []
    sizes = [n for n in sizes if n not in {r["hosts"] for r in rows}]
    for n in sizes:
        rows.append(one_size(n, logdir, None if a.no_lock else a.lock))
        rows.sort(key=lambda r: r["hosts"])
        (logdir / "rows.json").write_text(json.dumps(rows, indent=2))
    report = [
        "control plane at fleet scale (bench/control_plane.py)",
        f"machine: {os.cpu_count()} cores, {platform.platform()}, "
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}",
        "light lab hosts (systemd + sshd, STAND-IN stub engine); times in seconds;",
        "cmds/host = SSH commands per host of the no-op serve run, counted by each host's sshd",
        "",
        table(rows),
        "",
        markdown(rows),
        "",
        "per step (json):",
        json.dumps(rows, indent=1),
    ]
    text = "\n".join(report) + "\n"
    Path(a.out).write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
