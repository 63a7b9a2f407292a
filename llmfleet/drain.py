"""Drain: take a server out of the fleet's router(s), wait for its requests, put it back.

A rolling rollout or a rollback that restarts a server still taking traffic
fails every request in flight there.  So before a host restarts, each router
stops sending it new requests (smg's ``DELETE /workers/{id}``: the worker is
``draining`` at once and gone a few seconds later), and we wait, within
``drain_timeout``, until the server's own in-flight gauges read zero (vLLM's
``vllm:num_requests_running`` + ``vllm:num_requests_waiting``, SGLang's
``sglang:num_running_reqs`` + ``sglang:num_queue_reqs``): requests that reached
it directly count too.  After the host's health gate passed, it goes back in
(``POST /workers``) and we wait until the router reports it ready and healthy.
A host that failed stays out.

The router's admin API and the servers' ``/metrics`` are reached from the
control node over HTTP.  Everything that talks HTTP goes through ``Http``, so
the logic is tested against a fake router with smg's semantics.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from .errors import LlmfleetError

INFLIGHT_METRICS = (
    "vllm:num_requests_running",
    "vllm:num_requests_waiting",
    "sglang:num_running_reqs",
    "sglang:num_queue_reqs",
)
# a server whose /metrics has none of them (SGLang without --enable-metrics): wait this
# long (at most drain_timeout) for what it may still be answering
UNKNOWN_GRACE_S = 5.0
# how long the gauges must read zero before a drained server counts as idle
SETTLE_S = 1.0


class Http(Protocol):
    def __call__(
        self, method: str, url: str, *, headers: dict[str, str], json: Any = None
    ) -> tuple[int, Any]: ...


def requests_http(timeout: float = 5.0) -> Http:
    """``Http`` over requests: (status, parsed JSON or text); status 0 when unreachable."""
    import requests

    def call(method: str, url: str, *, headers: dict[str, str], json: Any = None):
        try:
            resp = requests.request(method, url, headers=headers, json=json, timeout=timeout)
        except requests.RequestException as exc:
            return 0, f"{type(exc).__name__}: {exc}"
        try:
            return resp.status_code, resp.json()
        except ValueError:
            return resp.status_code, resp.text

    return call


@dataclass(frozen=True)
class RouterWorker:
    """A server as a router sees it."""

    id: str
    url: str
    status: str  # smg: ready, draining, ...
    healthy: bool
    load: int = 0

    @property
    def serving(self) -> bool:
        return self.status == "ready" and self.healthy


@dataclass
class RouterAPI:
    """One router's admin API (smg): list, remove and add servers."""

    name: str
    base_url: str
    api_key: str | None = None
    http: Http = field(default_factory=requests_http)

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}

    def workers(self) -> list[RouterWorker]:
        status, body = self.http("GET", f"{self.base_url}/workers", headers=self._headers())
        if status != 200 or not isinstance(body, dict):
            raise LlmfleetError(f"router {self.name}: GET /workers answered {status}: {body}")
        return [
            RouterWorker(
                id=str(w["id"]),
                url=str(w["url"]).rstrip("/"),
                status=str(w.get("status", "ready")),
                healthy=bool(w.get("is_healthy", True)),
                load=int(w.get("load") or 0),
            )
            for w in body.get("workers", [])
        ]

    def find(self, url: str) -> RouterWorker | None:
        return next((w for w in self.workers() if w.url == url.rstrip("/")), None)

    def remove(self, worker: RouterWorker) -> None:
        status, body = self.http(
            "DELETE", f"{self.base_url}/workers/{worker.id}", headers=self._headers()
        )
        if status not in (200, 202, 204, 404):
            raise LlmfleetError(f"router {self.name}: removing {worker.url}: {status} {body}")

    def add(self, url: str) -> None:
        """Register ``url`` again.  The key goes in the body too: smg gives a worker added
        through its API no key of its own (the router's ``--api-key`` only reaches the
        workers it started with), and a server with a key would answer it 401."""
        spec = {"url": url, **({"api_key": self.api_key} if self.api_key else {})}
        status, body = self.http(
            "POST", f"{self.base_url}/workers", headers=self._headers(), json=spec
        )
        # 409: already there, or its registration is under way: both mean "wait for it"
        if status not in (200, 201, 202, 409):
            raise LlmfleetError(f"router {self.name}: adding {url}: {status} {body}")


def parse_inflight(text: str) -> int | None:
    """Requests running + waiting in a Prometheus text page; None when it has none."""
    total, seen = 0.0, False
    for line in text.splitlines():
        name = line.split("{", 1)[0].split(" ", 1)[0]
        if name in INFLIGHT_METRICS:
            try:
                total += float(line.rsplit(" ", 1)[1])
                seen = True
            except (IndexError, ValueError):
                continue
    return int(total) if seen else None


def inflight(http: Http, url: str) -> int | None:
    """The server's in-flight requests: 0 when nothing answers (a stopped server has
    none), None when it answers without the gauges."""
    status, body = http("GET", f"{url}/metrics", headers={})
    if status == 0:
        return 0
    if status != 200 or not isinstance(body, str):
        return None
    return parse_inflight(body)


@dataclass
class DrainReport:
    host: str
    url: str
    seconds: float = 0.0
    left: int | None = 0  # in flight when we stopped waiting (None: unknown)
    timed_out: bool = False

    def line(self) -> str:
        if self.timed_out:
            return (
                f"{self.host}: drain bound of {self.seconds:.0f}s reached with "
                f"{self.left} request(s) in flight"
            )
        if self.left is None:
            return (
                f"{self.host}: out of the router; no in-flight gauges, waited {self.seconds:.1f}s"
            )
        return f"{self.host}: out of the router, drained in {self.seconds:.1f}s"


@dataclass
class Drainer:
    """Takes servers out of every router and puts them back, within bounds."""

    routers: list[RouterAPI]
    timeout: float = 120.0
    back_timeout: float = 120.0
    poll: float = 0.5
    http: Http = field(default_factory=requests_http)
    clock: Callable[[], float] = time.monotonic
    sleep: Callable[[float], None] = time.sleep

    def take_out(self, host: str, url: str, timeout: float | None = None) -> DrainReport:
        """Out of every router (wait until each shows it draining or gone: smg queues the
        removal), then wait until the server has had nothing in flight for ``SETTLE_S``
        (a request the API server is still reading or tokenizing is in no gauge yet), all
        within ``timeout`` (default the drainer's)."""
        bound = self.timeout if timeout is None else timeout
        start = self.clock()
        for router in self.routers:
            found = router.find(url)
            if found is not None and found.status != "draining":
                router.remove(found)
                found = router.find(url)
            while found is not None and found.status != "draining":
                if self.clock() - start >= bound:
                    break
                self.sleep(self.poll)
                found = router.find(url)
        report = DrainReport(host, url)
        idle_since: float | None = None
        while True:
            left = inflight(self.http, url)
            now = self.clock()
            report.seconds, report.left = now - start, left
            idle_since = (idle_since if idle_since is not None else now) if left == 0 else None
            if idle_since is not None and now - idle_since >= SETTLE_S:
                return report
            if left is None and report.seconds >= min(UNKNOWN_GRACE_S, bound):
                return report
            if report.seconds >= bound:
                report.timed_out = True
                return report
            self.sleep(self.poll)

    def put_back(self, host: str, url: str) -> str | None:
        """Back in every router, ready and healthy; None, or why not within the bound."""
        start = self.clock()
        pending = list(self.routers)
        why = "no answer"
        while pending:
            for router in list(pending):
                try:
                    found = router.find(url)
                    if found is None:
                        router.add(url)
                    elif found.serving:
                        pending.remove(router)
                    why = f"router {router.name}: {found.status if found else 'added'}"
                except LlmfleetError as exc:
                    why = str(exc)
            if not pending:
                return None
            if self.clock() - start >= self.back_timeout:
                return f"{host}: not back in the router within {self.back_timeout:.0f}s ({why})"
            self.sleep(self.poll)
        return None


@dataclass
class BatchDrain:
    """The rollout's view: hosts -> their router worker URL (a serve_group's members map
    to its rank 0), drained before a batch runs and put back after it passed."""

    drainer: Drainer
    urls: dict[str, str]
    say: Callable[[str], None] = print
    timeouts: dict[str, float] = field(default_factory=dict)  # host -> its drain_timeout
    out: set[str] = field(default_factory=set)

    def _targets(self, hosts: list[str]) -> dict[str, str]:
        return {self.urls[h]: h for h in hosts if h in self.urls}

    def before(self, hosts: list[str]) -> None:
        for url, host in self._targets(hosts).items():
            self.say(self.drainer.take_out(host, url, self.timeouts.get(host)).line())
            self.out.add(url)

    def after(self, ok: dict[str, bool]) -> dict[str, str]:
        """Put back each server whose hosts in the batch all passed (``ok``: host -> passed);
        host -> why, for those that did not come back.  The failed stay out."""
        failed: dict[str, str] = {}
        for url, host in self._targets(list(ok)).items():
            members = [h for h in ok if self.urls.get(h) == url]
            if not all(ok[h] for h in members):
                self.say(f"{host}: failed, stays out of the router")
                continue
            why = self.drainer.put_back(host, url)
            if why:
                failed[host] = why
            else:
                self.out.discard(url)
                self.say(f"{host}: back in the router")
        return failed
