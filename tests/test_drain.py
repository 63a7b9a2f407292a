"""Drain: out of the router, in-flight requests waited for (within a bound), back in.

The router here is a fake with smg 1.13's semantics as measured against the
real one: ``DELETE /workers/{id}`` -> 202 and the worker ``draining`` (gone a
moment later), ``POST /workers`` -> 202 and a registration that turns
``ready`` after a poll, 409 while the old entry still exists; a worker added
without the servers' key in the body never registers (smg asks its
``/v1/models`` without one and gets 401).  Time is a fake
clock, so bounds are checked without waiting.
"""

from __future__ import annotations

from typing import Any

import pytest

from llmfleet.drain import SETTLE_S, BatchDrain, Drainer, RouterAPI, parse_inflight
from llmfleet.lab.stubengine import Counters, metrics_text
from llmfleet.rollout import roll

A, B = "http://10.0.0.1:8000", "http://10.0.0.2:8000"


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, s: float) -> None:
        self.now += s


class FakeFleet:
    """An smg router (admin API) and the servers' /metrics, over one ``Http``."""

    def __init__(self, clock: Clock, urls: list[str]) -> None:
        self.clock = clock
        self.workers = {
            u: {"id": f"id-{i}", "url": u, "status": "ready", "is_healthy": True}
            for i, u in enumerate(urls)
        }
        self.inflight = {u: 0 for u in urls}
        self.gone_at: dict[str, float] = {}
        self.ready_at: dict[str, float] = {}
        self.calls: list[tuple[str, str]] = []

    def _tick(self) -> None:
        for url, t in list(self.gone_at.items()):
            if self.clock.now >= t:
                del self.workers[url], self.gone_at[url]
        for url, t in list(self.ready_at.items()):
            if self.clock.now >= t:
                self.workers[url]["status"] = "ready"
                del self.ready_at[url]

    def __call__(self, method: str, url: str, *, headers: dict, json: Any = None):
        self._tick()
        self.calls.append((method, url))
        assert headers.get("Authorization") == "Bearer k" or url.endswith("/metrics")
        if url.endswith("/metrics"):
            base = url[: -len("/metrics")]
            if self.inflight.get(base) is None:
                return 0, "ConnectionError"
            return 200, metrics_text(Counters(running=self.inflight[base]), "tiny")
        if method == "GET":
            return 200, {"workers": list(self.workers.values())}
        if method == "DELETE":
            wid = url.rsplit("/", 1)[1]
            w = next(w for w in self.workers.values() if w["id"] == wid)
            w["status"], w["is_healthy"] = "draining", False
            self.gone_at[w["url"]] = self.clock.now + 5
            return 202, {"status": "accepted"}
        if method == "POST":
            if json["url"] in self.workers:
                return 409, {"code": "WORKER_ALREADY_EXISTS"}
            self.workers[json["url"]] = {
                "id": f"new-{json['url']}",
                "url": json["url"],
                "status": "pending",
                "is_healthy": True,
            }
            if json.get("api_key") == "k":  # without the key, its registration never ends
                self.ready_at[json["url"]] = self.clock.now + 2
            return 202, {"status": "accepted"}
        raise AssertionError(method)


def _drainer(fleet: FakeFleet, clock: Clock, **kw) -> Drainer:
    api = RouterAPI("r1", "http://10.0.9.1:30000", "k", fleet)
    return Drainer([api], http=fleet, clock=clock, sleep=clock.sleep, **kw)


def test_take_out_stops_routing_at_once_and_waits_for_the_requests_in_flight() -> None:
    clock = Clock()
    fleet = FakeFleet(clock, [A, B])
    fleet.inflight[A] = 3
    drainer = _drainer(fleet, clock)

    def finish_later(s: float) -> None:
        clock.sleep(s)
        if clock.now >= 4:  # the server finishes its requests 4 s in
            fleet.inflight[A] = 0

    drainer.sleep = finish_later
    report = drainer.take_out("h1", A)
    # out of the router before the first look at the server's gauges
    assert [c[0] for c in fleet.calls[:3]] == ["GET", "DELETE", "GET"]
    assert fleet.calls[3] == ("GET", f"{A}/metrics")
    assert A not in fleet.workers or fleet.workers[A]["status"] == "draining"
    # idle from 4 s on, and still idle SETTLE_S later
    assert report.left == 0 and not report.timed_out and 5 <= report.seconds < 5.6
    assert "drained in 5" in report.line()


def test_take_out_gives_up_at_its_bound_and_says_so() -> None:
    clock = Clock()
    fleet = FakeFleet(clock, [A])
    fleet.inflight[A] = 2
    report = _drainer(fleet, clock, timeout=30).take_out("h1", A)
    assert report.timed_out and report.left == 2 and 30 <= report.seconds < 31
    assert "bound of 30s reached with 2 request(s) in flight" in report.line()
    # a per-host bound (drain_timeout) wins over the drainer's
    assert _drainer(fleet, clock).take_out("h1", A, timeout=3).seconds < 4


def test_a_stopped_server_has_nothing_in_flight() -> None:
    clock = Clock()
    fleet = FakeFleet(clock, [A])
    fleet.inflight[A] = None  # nothing answers on its port
    report = _drainer(fleet, clock).take_out("h1", A)
    assert report.left == 0 and report.seconds <= SETTLE_S


def test_in_flight_gauges_of_vllm_and_sglang() -> None:
    page = metrics_text(Counters(running=2), "m") + 'vllm:num_requests_waiting{x="y"} 3\n'
    assert parse_inflight(page) == 5
    assert parse_inflight("sglang:num_running_reqs 1.0\nsglang:num_queue_reqs 4\n") == 5
    assert parse_inflight("other_metric 9\n") is None


def test_put_back_waits_for_the_old_entry_to_go_and_the_new_one_to_be_ready() -> None:
    clock = Clock()
    fleet = FakeFleet(clock, [A, B])
    drainer = _drainer(fleet, clock)
    drainer.take_out("h1", A)
    assert drainer.put_back("h1", A) is None
    assert fleet.workers[A]["status"] == "ready" and fleet.workers[A]["id"].startswith("new-")
    assert 5 <= clock.now < 10  # removal after 5 s, registration 2 s


def test_put_back_has_a_bound() -> None:
    clock = Clock()
    fleet = FakeFleet(clock, [A])
    fleet.workers[A]["is_healthy"] = False  # in, but never healthy
    why = _drainer(fleet, clock, back_timeout=20).put_back("h1", A)
    assert why and "h1: not back in the router within 20s" in why


def _batch_drain(fleet: FakeFleet, clock: Clock, urls: dict[str, str], said: list[str]):
    return BatchDrain(_drainer(fleet, clock), urls, say=said.append)


def test_a_rollout_drains_each_batch_and_a_failed_host_stays_out() -> None:
    clock = Clock()
    fleet = FakeFleet(clock, [A, B])
    said: list[str] = []
    drain = _batch_drain(fleet, clock, {"h1": A, "h2": B}, said)
    states: list[dict[str, str]] = []

    def run(batch: list[str]) -> dict[str, dict]:
        states.append({u: w["status"] for u, w in fleet.workers.items()})
        return {h: {"status": "failed" if h == "h2" else "healthy", "detail": "x"} for h in batch}

    out = roll(["h1", "h2"], "1", "1", run, say=said.append, drain=drain)
    # while h1 deployed it was draining and h2 served; then the other way round
    assert states == [{A: "draining", B: "ready"}, {A: "ready", B: "draining"}]
    assert out.done == ["h1"] and list(out.failed) == ["h2"]
    assert "h1: back in the router" in said and "h2: failed, stays out of the router" in said
    assert B in drain.out


def test_a_host_that_does_not_come_back_in_counts_as_failed_and_stops_the_rollout() -> None:
    clock = Clock()
    fleet = FakeFleet(clock, [A, B])
    drain = _batch_drain(fleet, clock, {"h1": A, "h2": B}, [])
    drain.drainer.back_timeout = 20

    def never_ready(method: str, url: str, *, headers: dict, json: Any = None):
        res = fleet(method, url, headers=headers, json=json)
        fleet.ready_at.clear()  # its registration never completes
        return res

    drain.drainer.routers[0].http = never_ready
    out = roll(
        ["h1", "h2"],
        "1",
        "0",
        lambda b: {h: {"status": "healthy"} for h in b},
        say=lambda m: None,
        drain=drain,
    )
    assert out.stopped and out.skipped == ["h2"]
    assert "not back in the router within 20s" in out.failed["h1"]


def test_a_group_member_in_a_batch_drains_the_groups_rank_0(  # serve groups share one URL
) -> None:
    clock = Clock()
    fleet = FakeFleet(clock, [A])
    drain = _batch_drain(fleet, clock, {"g1": A, "g2": A}, [])
    drain.before(["g2"])
    assert fleet.workers[A]["status"] == "draining"
    # the group goes back only when every member in the batch passed
    assert drain.after({"g1": True, "g2": False}) == {}
    assert A in drain.out


@pytest.mark.parametrize("status", [500, 401])
def test_a_router_that_refuses_is_an_error_naming_it(status: int) -> None:
    api = RouterAPI("r1", "http://10.0.9.1:30000", None, lambda *a, **k: (status, "no"))
    with pytest.raises(Exception, match=f"router r1: GET /workers answered {status}"):
        api.workers()
