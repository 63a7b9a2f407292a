"""The fleet's router on the lab: one endpoint, rollouts with zero failed requests.

Three lab hosts (``inventories/lab_router.py``): lab1 and lab2 serve the lab
recipe (vLLM on CPU, one endpoint key for all), lab3 runs the router (smg
under systemd, health checks every 2 s).  Two servers are the fewest that
show a rollout keeping the endpoint up; a third only adds one more restart
of the same kind (and its CPU) to a 2-core run.  With load running through the router
(``llmfleet/loadgen.py``) the whole time:

- ``llmfleet rollout`` of a changed flag restarts every server once and not
  one request fails (each server leaves the router, drains, restarts, passes
  its health gate and comes back);
- ``deploys/rollback.py`` drains the same way;
- ``kill -9`` of one server's engine: the router stops sending to it within
  ``KILL_BOUND_S`` (two failed health checks 2 s apart, plus one interval),
  and it is back in once systemd has restarted it.

Takes over *the* lab, like the other lab tests, and takes it down at the end.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from llmfleet.loadgen import LoadReport, LoadSpec, run

from .labkit import ROOT, Run, fresh_lab, run_pyinfra, ssh_run

pytestmark = pytest.mark.lab

INV = "inventories/lab_router.py"
UNIT = "llmfleet-serve.service"
ROUTER_UNIT = "llmfleet-router.service"
ROUTER_PORT, METRICS_PORT = 30000, 29000
# two failed checks 2 s apart (router_health_interval: 2, --health-failure-threshold 2),
# plus one interval for where in it the kill lands, plus the check's own round trip
KILL_BOUND_S = 8.0
BACK_BOUND_S = 180.0  # vLLM on 2 CPU cores starts in about 45 s


def deploy(path: str, *args: str) -> Run:
    start = time.monotonic()
    return Run(run_pyinfra(path, *args, inventory=INV), time.monotonic() - start)


def http(url: str, key: str | None = None, body: dict | None = None) -> tuple[int, Any]:
    headers = {"Content-Type": "application/json"}
    if key:
        headers["Authorization"] = f"Bearer {key}"
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            text = r.read().decode()
            status = r.status
    except urllib.error.HTTPError as exc:
        text, status = exc.read().decode(), exc.code
    try:
        return status, json.loads(text)
    except ValueError:
        return status, text


class Load:
    """The load generator in a thread, through the router, until stopped (or its bounds)."""

    def __init__(self, url: str, key: str) -> None:
        self.stop = threading.Event()
        self.spec = LoadSpec(
            url=url, requests=50_000, duration=1200, concurrency=2, rate=20, api_key=key, watch=True
        )
        self.report: LoadReport | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.started = time.monotonic()
        self.thread.start()

    def _run(self) -> None:
        self.report = run(self.spec, self.stop)

    def finish(self) -> LoadReport:
        self.stop.set()
        self.thread.join(timeout=180)
        assert self.report is not None, "the load generator did not finish"
        return self.report


@pytest.fixture(scope="module")
def lab_state() -> Iterator[dict[str, Any]]:
    with fresh_lab(3) as state:
        yield state


@pytest.fixture(scope="module")
def key_file(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The fleet's endpoint key: the inventory makes it for the router host in a secrets
    directory of this test's own."""
    secrets = tmp_path_factory.mktemp("secrets")
    before = os.environ.get("LLMFLEET_SECRETS_DIR")
    os.environ["LLMFLEET_SECRETS_DIR"] = str(secrets)
    yield secrets / "lab3.api-key"
    if before is None:
        del os.environ["LLMFLEET_SECRETS_DIR"]
    else:
        os.environ["LLMFLEET_SECRETS_DIR"] = before


@pytest.fixture(scope="module")
def fleet(lab_state: dict[str, Any], key_file: Path) -> dict[str, Any]:
    """Servers on lab1 and lab2, then the router on lab3, all with one endpoint key."""
    serve = deploy("deploys/serve.py")
    print(f"serve deploy on 2 lab hosts: {serve.seconds:.0f}s")
    assert serve.rc == 0, serve
    assert key_file.stat().st_mode & 0o777 == 0o600
    router = deploy("deploys/router.py")
    print(f"router deploy: {router.seconds:.0f}s")
    assert router.rc == 0, router
    hosts = lab_state["hosts"]
    return {
        "servers": hosts[:-1],
        "router": hosts[-1],
        "url": f"http://{hosts[-1]['address']}:{ROUTER_PORT}",
        "key": key_file.read_text().strip(),
        "key_file": key_file,
        "router_run": router,
    }


def workers(fleet: dict[str, Any]) -> dict[str, dict]:
    status, body = http(f"{fleet['url']}/workers", fleet["key"])
    assert status == 200, body
    return {w["url"]: w for w in body["workers"]}


def server_url(host: dict[str, Any]) -> str:
    return f"http://{host['address']}:8000"


def wait_until(what: str, check, bound: float, step: float = 0.2) -> float:
    """Seconds until ``check()`` held; fails the test past ``bound``."""
    start = time.monotonic()
    while not check():
        assert time.monotonic() - start < bound, f"{what}: not within {bound:.0f}s"
        time.sleep(step)
    return time.monotonic() - start


def all_in(fleet: dict[str, Any]) -> bool:
    seen = workers(fleet)
    return all(
        seen.get(server_url(h), {}).get("status") == "ready"
        and seen.get(server_url(h), {}).get("is_healthy")
        for h in fleet["servers"]
    )


def test_one_endpoint_for_the_fleet(fleet: dict[str, Any]) -> None:
    router = fleet["router"]
    assert ssh_run(router, f"systemctl is-active {ROUTER_UNIT}") == "active"
    assert ssh_run(router, f"systemctl is-enabled {ROUTER_UNIT}") == "enabled"
    assert ssh_run(router, f"systemctl show -p User --value {ROUTER_UNIT}") == "llmfleet-router"
    # the worker list is the inventory's serving hosts, and the router host is not one
    wait_until("every server in and healthy", lambda: all_in(fleet), 60)
    assert set(workers(fleet)) == {server_url(h) for h in fleet["servers"]}
    status, ready = http(f"{fleet['url']}/readiness")
    assert status == 200 and ready["healthy_workers"] == len(fleet["servers"]), ready
    chat = {"model": "tiny", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}
    status, body = http(f"{fleet['url']}/v1/chat/completions", fleet["key"], chat)
    assert status == 200 and body["choices"], body
    status, body = http(f"{fleet['url']}/v1/chat/completions", None, chat)
    assert status == 401, body
    # its own metrics
    metrics = urllib.request.urlopen(
        f"http://{router['address']}:{METRICS_PORT}/metrics", timeout=10
    ).read()
    assert b"smg_router_requests_total" in metrics
    # the key: in the 0600 env file only
    assert ssh_run(router, "stat -c '%a %U' /etc/llmfleet/router.env") == "600 root"
    for where in (
        "ps -eo args",
        f"systemctl show {ROUTER_UNIT}",
        f"cat /etc/systemd/system/{ROUTER_UNIT}",
        "journalctl --no-pager -o cat",
    ):
        assert fleet["key"] not in ssh_run(router, where), f"the key shows in `{where}`"
    # a release like the servers'
    current = ssh_run(router, "readlink /var/lib/llmfleet-router/releases/current")
    manifest = json.loads(
        ssh_run(router, f"cat /var/lib/llmfleet-router/releases/{current}/manifest.json")
    )
    assert manifest["package"] == "smg==1.13.0" and manifest["policy"] == "cache_aware"
    assert [w["host"] for w in manifest["workers"]] == [h["name"] for h in fleet["servers"]]


def test_a_second_router_deploy_changes_nothing(fleet: dict[str, Any]) -> None:
    again = deploy("deploys/router.py")
    assert again.rc == 0, again
    assert again.changed == 0, again


def test_status_shows_each_server_in_the_router(fleet: dict[str, Any]) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "llmfleet", "status", INV, "--json"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rows = json.loads(proc.stdout)
    router = next(r for r in rows if r["role"] == "router")
    assert router["ready"] and len(router["workers"]) == len(fleet["servers"])
    assert all(w["in"] and w["healthy"] for w in router["workers"])
    servers = [r for r in rows if r["role"] == "server"]
    assert [r["host"] for r in servers] == [h["name"] for h in fleet["servers"]]
    assert all(r["router"][fleet["router"]["name"]]["in"] for r in servers)
    table = subprocess.run(
        [sys.executable, "-m", "llmfleet", "status", INV],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "200"},
    ).stdout
    assert "in, healthy" in table and "router" in table


def _starts_since(host: dict[str, Any], since: float) -> int:
    """How many times systemd started the server since ``since`` (epoch seconds): the
    "Started" message of a start job, or of a restart job's second half (its first, the
    stop, is logged as JOB_TYPE=restart)."""
    out = ssh_run(
        host,
        f"journalctl --since=@{int(since)} UNIT={UNIT} JOB_TYPE=start JOB_RESULT=done "
        "-o cat --no-pager | wc -l",
    )
    return int(out)


def test_rollout_under_load_restarts_each_server_once_and_fails_no_request(
    fleet: dict[str, Any],
) -> None:
    wait_until("every server in and healthy", lambda: all_in(fleet), 60)
    since = time.time() - 1
    load = Load(fleet["url"], fleet["key"])
    start = time.monotonic()
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "llmfleet",
            "rollout",
            INV,
            "--batch",
            "1",
            "--data",
            "flag.--max-num-seqs=8",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=1500,
        env={**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "200"},
    )
    took = time.monotonic() - start
    time.sleep(2)  # the last server back in under load
    report = load.finish()
    n = len(fleet["servers"])
    print(f"rollout of {n} servers under load: {took:.0f}s; load: {report.line()}")
    print(f"sent {report.sent}, failed {report.failed}, p99 {report.p99_ms:.0f} ms")
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-3000:]
    for host in fleet["servers"]:
        assert f"{host['name']}: back in the router" in proc.stdout, proc.stdout[-6000:]
        assert _starts_since(host, since) == 1, host["name"]
        args = ssh_run(host, f"ps -o args= -p $(systemctl show -p MainPID --value {UNIT})")
        assert "--max-num-seqs 8" in args
        # it was out of the router while it restarted, and is back
        assert report.out_s.get(server_url(host), 0) > 0, report.out_s
    assert report.sent > 50, report.line()
    assert report.failed == 0, report.line()
    assert all_in(fleet)


def test_rollback_drains_the_same_way(fleet: dict[str, Any]) -> None:
    lab1 = fleet["servers"][0]
    since = time.time() - 1
    load = Load(fleet["url"], fleet["key"])
    run_ = deploy("deploys/rollback.py", "--limit", lab1["name"])
    time.sleep(2)
    report = load.finish()
    print(f"rollback of {lab1['name']} under load: {run_.seconds:.0f}s; load: {report.line()}")
    assert run_.rc == 0, run_
    assert "Out of the router, in-flight requests drained" in run_.out
    assert re.search(rf"\[{lab1['name']}\] back in the router", run_.out), run_
    assert _starts_since(lab1, since) == 1
    assert report.out_s.get(server_url(lab1), 0) > 0, report.out_s
    assert report.failed == 0, report.line()
    assert all_in(fleet)


def test_kill_9_of_an_engine_the_router_stops_sending_to_it_then_takes_it_back(
    fleet: dict[str, Any],
) -> None:
    lab2 = fleet["servers"][1]
    url = server_url(lab2)
    wait_until("every server in and healthy", lambda: all_in(fleet), 60)
    load = Load(fleet["url"], fleet["key"])
    time.sleep(3)
    pid = ssh_run(lab2, f"systemctl show -p MainPID --value {UNIT}")
    ssh_run(lab2, f"kill -9 {pid}")
    killed = time.monotonic()
    out = wait_until(
        "the router marks the killed server unhealthy",
        lambda: not workers(fleet).get(url, {}).get("is_healthy", False),
        KILL_BOUND_S + 10,
    )
    back = wait_until(
        "the restarted server back in the router", lambda: all_in(fleet), BACK_BOUND_S, 1.0
    )
    report = load.finish()
    errors = ", ".join(f"{k}: {v}" for k, v in report.errors.items()) or "none"
    print(
        f"kill -9 of {lab2['name']}'s engine under load: out of the router after {out:.1f}s "
        f"(bound {KILL_BOUND_S:.0f}s), back in {out + back:.0f}s after the kill; "
        f"failed requests: {report.failed} ({errors}) of {report.sent}; load: {report.line()}"
    )
    assert out <= KILL_BOUND_S, f"{out:.1f}s"
    assert time.monotonic() - killed < BACK_BOUND_S + KILL_BOUND_S + 20
    assert report.out_s.get(url, 0) > 0, report.out_s
