#!/usr/bin/env python3
"""Benchmark: what does the fleet's router (smg) add, next to talking to a server directly?

One run does everything, on loopback only:

1. Installs (once, cached in ``/var/cache/llmfleet-bench/router-<pin>``) the
   router at the pin the deploy uses (``files/routers/smg.yaml``) into its own
   venv with pip.
2. Starts the STAND-IN stub engine (``llmfleet/lab/stubengine.py``: aiohttp,
   a fixed reply, no generation) on 127.0.0.1, and smg in front of it with the
   same flags the router deploy renders (``llmfleet/router.py``), one worker:
   the only difference between the two paths is the router.
3. Sends the same bounded load (``llmfleet/loadgen.py``) straight to the stub
   and through the router, alternating the order every round (``--rounds``):

   * latency: ``--latency-requests`` requests one at a time (concurrency 1):
     p50/p99 per path; the router's added latency is the difference of p50s;
   * throughput: ``--rps-requests`` requests at ``--concurrency``: requests/s
     per path and their ratio (router / direct).

   The load generator, the router and the stub share this machine's cores, so
   the ratio is what the router costs where the client and the server are
   this cheap; on a real fleet a completion takes milliseconds to seconds.

Run from the repository root::

    python3 bench/router_overhead.py [--rounds 3] [--concurrency 16] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from llmfleet.loadgen import LoadSpec, run  # noqa: E402
from llmfleet.router import load_spec, router_argv  # noqa: E402
from llmfleet.settings import Settings  # noqa: E402

CACHE = Path("/var/cache/llmfleet-bench")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def router_venv(package: str) -> Path:
    venv = CACHE / f"router-{package.replace('==', '-')}"
    if not (venv / "bin" / "smg").exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run(
            [str(venv / "bin" / "pip"), "install", "-q", package], check=True, timeout=900
        )
    return venv


def wait_for(url: str, bound: float = 60) -> None:
    end = time.monotonic() + bound
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        if time.monotonic() > end:
            raise SystemExit(f"{url}: no answer within {bound:.0f}s")
        time.sleep(0.3)


def start(argv: list[str], log: Path) -> subprocess.Popen:
    return subprocess.Popen(argv, stdout=log.open("w"), stderr=subprocess.STDOUT, cwd=ROOT)


def router_command(venv: Path, port: int, metrics: int, worker: str) -> list[str]:
    """The deploy's own argv (llmfleet/router.py), launched by the key launcher."""
    from llmfleet.router import Worker

    s = Settings(router_port=port, router_metrics_port=metrics)
    spec = load_spec()
    argv = router_argv(spec, s, spec.default_policy, [Worker("stub", worker)])
    argv[argv.index("0.0.0.0")] = "127.0.0.1"
    return [str(venv / "bin" / "python"), str(ROOT / "files/scripts/llmfleet-router.py"), *argv[2:]]


def measure(url: str, requests: int, concurrency: int) -> dict:
    report = run(LoadSpec(url=url, requests=requests, duration=300, concurrency=concurrency))
    assert report.failed == 0, f"{url}: {report.line()}"
    return {"rps": report.rps, "p50_ms": report.p50_ms, "p99_ms": report.p99_ms}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--concurrency", type=int, default=16)
    p.add_argument("--latency-requests", type=int, default=2000)
    p.add_argument("--rps-requests", type=int, default=20000)
    p.add_argument("--json", action="store_true")
    a = p.parse_args()
    spec = load_spec()
    venv = router_venv(spec.package)
    stub_port, rport, mport = free_port(), free_port(), free_port()
    logs = CACHE / "router-bench-logs"
    logs.mkdir(parents=True, exist_ok=True)
    env_py = [sys.executable, "-m", "llmfleet.lab.stubengine", "--port", str(stub_port)]
    stub = start([*env_py, "--served-name", "tiny"], logs / "stub.log")
    direct = f"http://127.0.0.1:{stub_port}"
    router = start(router_command(venv, rport, mport, direct), logs / "router.log")
    via = f"http://127.0.0.1:{rport}"
    try:
        wait_for(f"{direct}/health")
        wait_for(f"{via}/readiness")
        measure(via, 500, 4)  # warm-up: connection pools, the cache-aware tree
        measure(direct, 500, 4)
        rounds: list[dict] = []
        for i in range(a.rounds):
            order = [("direct", direct), ("router", via)]
            if i % 2:
                order.reverse()
            row: dict = {}
            for name, url in order:
                row[f"{name}_latency"] = measure(url, a.latency_requests, 1)
                row[f"{name}_rps"] = measure(url, a.rps_requests, a.concurrency)
            rounds.append(row)
            print(f"round {i + 1}: {json.dumps(row)}", file=sys.stderr)
    finally:
        for proc in (router, stub):
            proc.terminate()
            proc.wait(timeout=30)

    def med(key: str, field: str) -> float:
        return statistics.median(r[key][field] for r in rounds)

    result = {
        "router": spec.package,
        "policy": spec.default_policy,
        "machine": f"{os.cpu_count()} cores, {platform.machine()}, "
        f"python {platform.python_version()}",
        "rounds": rounds,
        "direct_p50_ms": med("direct_latency", "p50_ms"),
        "router_p50_ms": med("router_latency", "p50_ms"),
        "direct_p99_ms": med("direct_latency", "p99_ms"),
        "router_p99_ms": med("router_latency", "p99_ms"),
        "direct_rps": med("direct_rps", "rps"),
        "router_rps": med("router_rps", "rps"),
    }
    result["added_p50_ms"] = result["router_p50_ms"] - result["direct_p50_ms"]
    result["rps_ratio"] = result["router_rps"] / result["direct_rps"]
    if a.json:
        print(json.dumps(result, indent=2))
    else:
        print(
            f"{spec.package} ({spec.default_policy}) vs direct, median of {a.rounds} rounds:\n"
            f"  latency, 1 at a time: p50 {result['direct_p50_ms']:.2f} -> "
            f"{result['router_p50_ms']:.2f} ms (+{result['added_p50_ms']:.2f} ms), "
            f"p99 {result['direct_p99_ms']:.2f} -> {result['router_p99_ms']:.2f} ms\n"
            f"  throughput at concurrency {a.concurrency}: {result['direct_rps']:.0f} -> "
            f"{result['router_rps']:.0f} req/s (ratio {result['rps_ratio']:.2f})"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
