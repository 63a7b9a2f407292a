"""The monitor deploy on the lab: ``llmfleet lab up --monitor``, the serve deploy, then
``pyinfra inventories/lab_monitor.py deploys/monitor.py``: Debian's Prometheus,
Alertmanager and node exporter from the lab's Debian mirror, targets from the
inventory (two vLLM servers, two node exporters, lab2's STAND-IN dcgm-exporter).

Checked through Prometheus' own HTTP API: every target up, one
``vllm:num_requests_running`` series per host, ``llmfleet top --once --json`` under
load (from Prometheus and by direct scrapes), the engine-down alert firing when a
server stops, and a second monitor deploy changing nothing.  The scrape interval
and the engine-down delay are shortened through the schema (``--data``) to keep
the module short.  About 4 minutes on 2 cores.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

from .labkit import ROOT, Run, fresh_lab, run_pyinfra, ssh_run

pytestmark = pytest.mark.lab

INVENTORY = "inventories/lab_monitor.py"
FAST = ("--data", "scrape_interval=5", "--data", "alert_engine_down_for=10")
PROMETHEUS = "http://10.213.0.11:9090"


def monitor() -> Run:
    start = time.monotonic()
    return Run(
        run_pyinfra("deploys/monitor.py", *FAST, inventory=INVENTORY), time.monotonic() - start
    )


def api(path: str, **params: str) -> Any:
    url = f"{PROMETHEUS}/api/v1/{path}"
    if params:
        url += "?" + urllib.parse.urlencode(params)
    with urllib.request.urlopen(url, timeout=10) as resp:
        body = json.load(resp)
    assert body["status"] == "success", body
    return body["data"]


def wait_for(what: str, check, timeout: float = 90.0, every: float = 2.0) -> Any:
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(every)
    raise AssertionError(f"{what}: not within {timeout:.0f}s (last: {last!r})")


@pytest.fixture(scope="module")
def lab_state() -> Iterator[dict[str, Any]]:
    with fresh_lab(2, monitor=True) as state:
        start = time.monotonic()
        served = Run(run_pyinfra("deploys/serve.py", inventory=INVENTORY), 0)
        served.seconds = time.monotonic() - start
        print(f"serve deploy on 2 lab hosts: {served.seconds:.0f}s")
        assert served.rc == 0, served
        yield state


@pytest.fixture(scope="module")
def first(lab_state: dict[str, Any]) -> Run:
    run = monitor()
    print(f"first monitor deploy: {run.seconds:.0f}s")
    assert run.rc == 0, run
    return run


def test_every_target_is_up(first: Run) -> None:
    def all_up():
        targets = api("targets")["activeTargets"]
        seen = sorted((t["labels"]["job"], t["labels"]["host"], t["health"]) for t in targets)
        return seen if all(h == "up" for *_, h in seen) else None

    seen = wait_for("every target up", all_up)
    assert seen == [
        ("accelerator", "lab2", "up"),  # the STAND-IN dcgm-exporter, at dcgm-exporter's port
        ("alertmanager", "lab1", "up"),
        ("engine", "lab1", "up"),
        ("engine", "lab2", "up"),
        ("node", "lab1", "up"),
        ("node", "lab2", "up"),
        ("prometheus", "lab1", "up"),
    ]
    rules = api("rules")["groups"][0]["rules"]
    assert {"EngineDown", "KvCacheFull", "RequestsWaiting", "GpuXidError"} <= {
        r["name"] for r in rules
    }


def test_one_running_requests_series_per_host(first: Run) -> None:
    result = api("query", query="vllm:num_requests_running")["result"]
    assert sorted(r["metric"]["host"] for r in result) == ["lab1", "lab2"]


def _load(stop: threading.Event, port_host: str, failed: list[str]) -> None:
    """Chat completions, 2 at a time, until ``stop``: enough to keep the gauges up, and
    with two servers on 2 cores more would starve `top` itself (4 at a time, with the
    servers' single OpenMP thread, made each `top` call take tens of seconds)."""
    body = json.dumps(
        {
            "model": "tiny",
            "messages": [{"role": "user", "content": "Count slowly."}],
            "max_tokens": 400,
            "ignore_eos": True,
        }
    ).encode()

    def one() -> None:
        # bounded by ``stop`` (the test's own seconds); an answer that is an error is
        # counted and the loop goes on, so one failed request does not end the load
        while not stop.is_set():
            req = urllib.request.Request(
                f"http://{port_host}/v1/chat/completions",
                data=body,
                headers={"Content-Type": "application/json"},
            )
            try:
                with urllib.request.urlopen(req, timeout=120) as resp:
                    resp.read()
            except (urllib.error.URLError, OSError) as exc:
                failed.append(f"{port_host}: {exc}")
                time.sleep(0.5)

    threads = [threading.Thread(target=one, daemon=True) for _ in range(2)]
    for t in threads:
        t.start()


def top(*args: str) -> dict[str, Any]:
    start = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "llmfleet", "top", INVENTORY, "--once", "--json", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    print(f"llmfleet top {' '.join(args)}: {time.monotonic() - start:.1f}s")
    return json.loads(proc.stdout)


def test_top_under_load(first: Run, lab_state: dict[str, Any]) -> None:
    stop, failed = threading.Event(), []
    for host in lab_state["hosts"]:
        _load(stop, f"{host['address']}:8000", failed)
    try:
        time.sleep(20)  # a few scrapes with requests running: the rate needs two
        for source in ("prometheus", "direct"):
            args = ("--source", source)
            # `running` is a gauge read at one instant: the two requests of a host start
            # and end together, so a read can fall in the gap between two; a few reads
            # (bounded) must see every host busy
            for _ in range(5):
                out = top(*args)
                rows = {r["host"]: r for r in out["hosts"]}
                if all((r.get("running") or 0) > 0 for r in rows.values()):
                    break
                time.sleep(1)
            assert out["source"] == source
            assert set(rows) == {"lab1", "lab2"}, out
            for name, row in rows.items():
                assert row["up"] is True, (source, row)
                assert row["running"] > 0, (source, name, row)
                assert row["gen_tok_s"] > 0, (source, name, row)
                assert row["restarts"] == 0, (source, row)
            stand_in = rows["lab2"]  # four recorded H200s: 143771 MiB each
            assert stand_in["gpu_mem_total_gb"] == pytest.approx(4 * 143771 * 1048576 / 1e9)
            assert rows["lab1"]["gpu_util_pct"] is None  # no exporter there
            print(f"top --once --json ({source}): {json.dumps(rows)}")
    finally:
        stop.set()
        print(f"load requests that failed: {len(failed)} {failed[:3]}")


def test_a_second_monitor_deploy_changes_nothing(first: Run) -> None:
    again = monitor()
    print(f"second monitor deploy: {again.seconds:.0f}s")
    assert again.rc == 0, again
    assert again.changed == 0, again


def test_a_stopped_server_fires_engine_down(first: Run, lab_state: dict[str, Any]) -> None:
    lab2 = next(h for h in lab_state["hosts"] if h["name"] == "lab2")
    ssh_run(lab2, "systemctl stop llmfleet-serve.service")
    stopped = time.monotonic()

    def firing():
        alerts = api("alerts")["alerts"]
        return [
            a for a in alerts if a["labels"]["alertname"] == "EngineDown" and a["state"] == "firing"
        ]

    [alert] = wait_for("EngineDown firing", firing, timeout=120)
    print(f"EngineDown firing {time.monotonic() - stopped:.0f}s after the stop: {alert}")
    assert alert["labels"]["host"] == "lab2"
    assert alert["labels"]["severity"] == "critical"
