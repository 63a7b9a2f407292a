"""The load generator against the STAND-IN stub engine, both real, on loopback.

Bounded by count and by time, refusing any target off loopback and the lab
bridge, counting every failure by kind; and the stub engine answering as a
vLLM server would (models, chat, its key, the in-flight gauges).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from llmfleet.drain import parse_inflight
from llmfleet.loadgen import LoadSpec, _Watch, check_target, percentile, run

REPO = Path(__file__).resolve().parent.parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _stub(port: int, *args: str, env: dict | None = None) -> subprocess.Popen:
    proc = subprocess.Popen(
        [sys.executable, "-m", "llmfleet.lab.stubengine", "--port", str(port), *args],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO), **(env or {})},
    )
    end = time.monotonic() + 20
    while True:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1)
            return proc
        except OSError:
            assert time.monotonic() < end and proc.poll() is None, "the stub did not start"
            time.sleep(0.1)


@pytest.fixture
def stub() -> Iterator[tuple[str, subprocess.Popen]]:
    port = _free_port()
    proc = _stub(port, "--served-name", "tiny", "--delay", "0.01")
    yield f"http://127.0.0.1:{port}", proc
    proc.terminate()
    proc.wait(timeout=10)


def test_it_stops_at_the_request_count(stub) -> None:
    url, _ = stub
    report = run(LoadSpec(url=url, requests=120, duration=60, concurrency=4))
    assert report.sent == report.ok == 120 and report.failed == 0
    assert 10 <= report.p50_ms <= report.p99_ms  # each reply takes the stub's 10 ms
    # the stub counted exactly what was sent
    page = urllib.request.urlopen(f"{url}/metrics").read().decode()
    assert 'vllm:request_success_total{model_name="tiny"} 120' in page
    assert parse_inflight(page) == 0


def test_it_stops_at_the_duration(stub) -> None:
    url, _ = stub
    start = time.monotonic()
    report = run(LoadSpec(url=url, requests=100_000, duration=1.0, concurrency=2))
    assert 1.0 <= time.monotonic() - start < 3.0
    assert 0 < report.sent < 100_000 and report.failed == 0


def test_a_paced_load_starts_requests_at_its_rate(stub) -> None:
    url, _ = stub
    start = time.monotonic()
    report = run(LoadSpec(url=url, requests=21, duration=30, concurrency=4, rate=20))
    took = time.monotonic() - start
    # request 20 starts 1 s in (unpaced, 21 replies of 10 ms at concurrency 4 take ~0.06 s)
    assert report.ok == 21 and 1.0 <= took < 3.0, took


def test_failures_are_counted_by_kind(stub) -> None:
    url, proc = stub
    assert run(LoadSpec(url=url, requests=5, duration=10)).failed == 0
    proc.terminate()
    proc.wait(timeout=10)
    report = run(LoadSpec(url=url, requests=7, duration=10, concurrency=1))
    assert report.sent == 7 and report.failed == 7 and report.errors == {"connect": 7}
    assert report.p50_ms is None and "failed 7 (connect: 7)" in report.line()


def test_the_stub_wants_its_key_from_the_environment_like_vllm() -> None:
    port = _free_port()
    proc = _stub(port, "--api-key-env", "STUB_KEY", env={"STUB_KEY": "k1"})
    url = f"http://127.0.0.1:{port}"
    try:
        report = run(LoadSpec(url=url, requests=3, duration=10, model="stub-model"))
        assert report.errors == {"http 401": 3}
        ok = run(LoadSpec(url=url, requests=3, duration=10, api_key="k1"))
        assert ok.failed == 0
        req = urllib.request.Request(f"{url}/v1/models", headers={"Authorization": "Bearer k1"})
        models = json.load(urllib.request.urlopen(req))
        assert [m["id"] for m in models["data"]] == ["stub-model"]
        # /health and /metrics stay open, as vLLM's do
        urllib.request.urlopen(f"{url}/health")
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.mark.parametrize(
    "url",
    ["http://8.8.8.8:80", "http://192.168.1.5:8000", "http://10.0.0.1:8000", "ftp://127.0.0.1"],
)
def test_it_refuses_anything_but_loopback_and_the_lab(url: str) -> None:
    with pytest.raises(ValueError):
        check_target(url)
    with pytest.raises(ValueError):
        run(LoadSpec(url=url, requests=1, duration=1))


def test_loopback_and_lab_addresses_pass() -> None:
    for url in ("http://127.0.0.1:1", "http://localhost:1", "http://10.213.0.14:30000"):
        check_target(url)


@pytest.mark.parametrize(
    "spec",
    [
        LoadSpec(url="http://127.0.0.1:1", requests=0, duration=1),
        LoadSpec(url="http://127.0.0.1:1", requests=10**9, duration=1),
        LoadSpec(url="http://127.0.0.1:1", requests=1, duration=0),
        LoadSpec(url="http://127.0.0.1:1", requests=1, duration=10**6),
        LoadSpec(url="http://127.0.0.1:1", requests=1, duration=1, rate=-1),
    ],
)
def test_count_and_duration_are_bounded(spec: LoadSpec) -> None:
    with pytest.raises(ValueError):
        spec.check()


def test_percentiles_are_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 50) == 50 and percentile(values, 99) == 99
    assert percentile([3.0], 99) == 3.0 and percentile([], 50) is None


def test_time_out_of_the_router_per_backend() -> None:
    watch = _Watch()
    a, b = "http://10.213.0.11:8000", "http://10.213.0.12:8000"
    ready = {"status": "ready", "is_healthy": True}
    watch.sample(0.0, [{"url": a, **ready}, {"url": b, **ready}])
    watch.sample(1.0, [{"url": a, "status": "draining", "is_healthy": False}, {"url": b, **ready}])
    watch.sample(2.0, [{"url": b, **ready}])  # removed
    watch.sample(4.5, [{"url": a, **ready}, {"url": b, "status": "ready", "is_healthy": False}])
    watch.close(5.0)
    assert watch.outages == {a: [(1.0, 4.5)], b: [(4.5, 5.0)]}
