#!/usr/bin/env python3
"""Bytes fetched from the Hub for a lab fleet, without and with the site mirror.

    python3 bench/fleet_hub_bytes.py [--hosts 4] [--shards 8] [--shard-mb 32]

Brings up a fresh lab of N hosts (any running lab is taken down first, so no
host cache or mirror cache survives from an earlier run), serves a repo of
random shards from the lab Hub, installs the pull tools (warm-up), then pulls it on every host with
``deploys/weights.py`` twice, each time into a fresh cache dir:
(a) every host straight from the Hub, (b) through ``deploys/mirror.py`` on
lab1.  The Hub's bytes are what the control machine sent onto the lab bridge
(host-to-host traffic is not counted there).  Prints the copies of the repo
each fleet pull cost; the target for (b) is one copy.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from llmfleet.lab import lab, shards  # noqa: E402


def pyinfra(*args: str) -> float:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
    start = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "pyinfra", "-y", "inventories/lab.py", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        sys.exit(f"pyinfra {' '.join(args)} failed:\n{proc.stdout[-3000:]}{proc.stderr[-3000:]}")
    return time.monotonic() - start


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--hosts", type=int, default=4)
    p.add_argument("--shards", type=int, default=8)
    p.add_argument("--shard-mb", type=int, default=32)
    p.add_argument("--json", action="store_true")
    a = p.parse_args()
    lab.down()  # fresh hosts: a cache left by an earlier run would hide every byte
    state = lab.up(hosts=a.hosts)
    shards.build(a.shards, a.shard_mb)
    hub_url = state["services"]["hub_url"]
    size = a.shards * (a.shard_mb << 20)
    common = ["deploys/weights.py", "--data", f"model_repo={shards.REPO}"]
    rows = []
    # warm-up: uv and the hub tool venv come from the wheelhouse over the same bridge;
    # install them first so only weight bytes are counted
    pyinfra("deploys/weights.py")
    before = shards.hub_bytes_sent()
    took = pyinfra(*common, "--data", "hf_home=/var/lib/llmfleet/bench-direct")
    rows.append(("direct from the Hub", shards.hub_bytes_sent() - before, took))
    lab1 = state["hosts"][0]["address"]
    upstream = state["services"]["hub_upstream_url"]
    pyinfra("deploys/mirror.py", "--limit", "lab1", "--data", f"mirror_upstream={upstream}")
    before = shards.hub_bytes_sent()
    took = pyinfra(
        *common,
        "--data",
        "hf_home=/var/lib/llmfleet/bench-mirror",
        "--data",
        f"hf_endpoint=http://{lab1}:8090",
        "--data",
        f"hf_control_endpoint={hub_url}",
    )
    rows.append(("through the site mirror on lab1", shards.hub_bytes_sent() - before, took))
    result = [
        {"mode": m, "hub_bytes": b, "copies": round(b / size, 3), "seconds": round(t, 1)}
        for m, b, t in rows
    ]
    if a.json:
        print(json.dumps({"hosts": a.hosts, "repo_bytes": size, "runs": result}, indent=2))
        return 0
    print(f"{a.hosts}-host lab fleet pulling {size / 1e6:.0f} MB ({a.shards} shards)")
    print(f"{'mode':34} {'Hub bytes':>14} {'copies':>7} {'seconds':>8}")
    for r in result:
        print(f"{r['mode']:34} {r['hub_bytes']:>14,} {r['copies']:>7.2f} {r['seconds']:>8.1f}")
    saved = result[0]["hub_bytes"] / max(result[1]["hub_bytes"], 1)
    print(f"mirror saves {saved:.1f}x of the Hub egress")
    return 0


if __name__ == "__main__":
    sys.exit(main())
