"""A small, bounded load generator for the router tests and benchmarks.

    python3 -m llmfleet.loadgen http://10.213.0.14:30000 --requests 2000 --duration 60 \\
        --concurrency 4 --model tiny [--watch] [--api-key-env VAR] [--json]

Why our own: the benchmark clients (``vllm bench serve``, guidellm, aiperf)
measure an engine's token throughput and need a tokenizer or a full vLLM
install; a rollout test needs something else: every failed request counted
and classified, latency percentiles, and how long each server was out of the
router while the load ran.  This is that, on aiohttp's client.

It is bounded and local by construction: ``--requests`` and ``--duration``
are both required and capped (``MAX_REQUESTS``, ``MAX_DURATION``), it stops
by itself at whichever comes first (or when ``stop`` is set), and it refuses
any target that is not a loopback address or a lab host on the lab bridge.

The report: requests sent, ok, failed by error kind (``http 503``,
``connect``, ``timeout``, ...), p50/p99 latency of the successful ones,
requests/s, and with ``--watch`` (the target is an smg router) the seconds
each backend was out of it (absent, draining or unhealthy), polled every
``WATCH_INTERVAL`` s from the router's ``GET /workers``.
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import json
import os
import socket
import sys
import threading
import time
import urllib.parse
from dataclasses import asdict, dataclass, field
from typing import Any

MAX_REQUESTS = 200_000
MAX_DURATION = 1800.0
WATCH_INTERVAL = 0.2


def allowed_network() -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    """Loopback and the lab bridge's subnet: the only places load may go."""
    from .lab.network import GATEWAY, PREFIX

    return [
        ipaddress.ip_network("127.0.0.0/8"),
        ipaddress.ip_network("::1/128"),
        ipaddress.ip_network(f"{GATEWAY}/{PREFIX}", strict=False),
    ]


def check_target(url: str) -> None:
    """Refuse anything but loopback and lab addresses (names are resolved first)."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{url}: expected http://HOST:PORT")
    try:
        infos = socket.getaddrinfo(parts.hostname, None)
    except socket.gaierror as exc:
        raise ValueError(f"{url}: cannot resolve {parts.hostname}: {exc}") from exc
    nets = allowed_network()
    for info in infos:
        ip = ipaddress.ip_address(info[4][0])
        if not any(ip in net for net in nets):
            raise ValueError(
                f"{url}: {ip} is neither loopback nor a lab address "
                f"({', '.join(map(str, nets))}); the load generator sends nowhere else"
            )


@dataclass(frozen=True)
class LoadSpec:
    url: str
    requests: int
    duration: float
    concurrency: int = 2
    model: str = "tiny"
    max_tokens: int = 4
    api_key: str | None = None
    watch: bool = False  # the target is an smg router: record each backend's time out
    timeout: float = 120.0  # one request
    # requests started per second, all workers together; 0: as fast as the concurrency
    # allows.  A paced load still shows every failed request of a rollout, and leaves the
    # lab's 2 cores to the servers that restart under it.
    rate: float = 0.0

    def check(self) -> None:
        if not 1 <= self.requests <= MAX_REQUESTS:
            raise ValueError(f"requests: {self.requests} outside 1..{MAX_REQUESTS}")
        if not 0 < self.duration <= MAX_DURATION:
            raise ValueError(f"duration: {self.duration} outside (0, {MAX_DURATION}] s")
        if not 1 <= self.concurrency <= 256:
            raise ValueError(f"concurrency: {self.concurrency} outside 1..256")
        if not 0 <= self.rate <= 10_000:
            raise ValueError(f"rate: {self.rate} outside 0..10000 requests/s")
        check_target(self.url)


@dataclass
class LoadReport:
    sent: int = 0
    ok: int = 0
    failed: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    p50_ms: float | None = None
    p99_ms: float | None = None
    seconds: float = 0.0
    rps: float = 0.0
    # backend URL -> seconds out of the router, and its outages as (start, end) offsets
    out_s: dict[str, float] = field(default_factory=dict)
    outages: dict[str, list[tuple[float, float]]] = field(default_factory=dict)

    def line(self) -> str:
        errs = ", ".join(f"{k}: {v}" for k, v in sorted(self.errors.items())) or "none"
        text = (
            f"sent {self.sent}, failed {self.failed} ({errs}), p50 {_ms(self.p50_ms)}, "
            f"p99 {_ms(self.p99_ms)}, {self.rps:.1f} req/s over {self.seconds:.1f}s"
        )
        if self.out_s:
            text += "; out of the router: " + ", ".join(
                f"{u} {s:.1f}s" for u, s in sorted(self.out_s.items())
            )
        return text

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _ms(v: float | None) -> str:
    return "-" if v is None else f"{v:.1f} ms"


def percentile(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0..100) of ``values``; None when empty."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, min(len(ordered), int(-(-q * len(ordered) // 100))))
    return ordered[rank - 1]


def error_kind(exc: BaseException) -> str:
    import aiohttp

    if isinstance(exc, asyncio.TimeoutError):
        return "timeout"
    if isinstance(exc, aiohttp.ClientConnectorError):
        return "connect"
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return "disconnected"
    if isinstance(exc, aiohttp.ClientPayloadError):
        return "truncated"
    if isinstance(exc, (ValueError, KeyError)):
        return "bad body"
    return type(exc).__name__


class _Watch:
    """Which backends the router has in and serving, sampled every WATCH_INTERVAL s."""

    def __init__(self) -> None:
        self.known: set[str] = set()
        self.out_since: dict[str, float] = {}
        self.outages: dict[str, list[tuple[float, float]]] = {}

    def sample(self, now: float, workers: list[dict[str, Any]]) -> None:
        serving = {
            str(w["url"]).rstrip("/")
            for w in workers
            if w.get("status", "ready") == "ready" and w.get("is_healthy", True)
        }
        self.known |= {str(w["url"]).rstrip("/") for w in workers}
        for url in self.known:
            if url not in serving and url not in self.out_since:
                self.out_since[url] = now
            elif url in serving and url in self.out_since:
                self.outages.setdefault(url, []).append((self.out_since.pop(url), now))

    def close(self, now: float) -> None:
        for url, since in list(self.out_since.items()):
            self.outages.setdefault(url, []).append((since, now))
        self.out_since.clear()


async def _run(spec: LoadSpec, stop: threading.Event | None) -> LoadReport:
    import aiohttp

    report, latencies = LoadReport(), []
    headers = {"Authorization": f"Bearer {spec.api_key}"} if spec.api_key else {}
    start = time.monotonic()
    deadline = start + spec.duration
    issued = 0
    watch = _Watch()

    def more() -> bool:
        return (
            issued < spec.requests and time.monotonic() < deadline and not (stop and stop.is_set())
        )

    async def one(session: aiohttp.ClientSession, i: int) -> None:
        body = {
            "model": spec.model,
            # a few shared prefixes, so a cache-aware router has something to be aware of
            "messages": [{"role": "user", "content": f"conversation {i % 8}: say hello"}],
            "max_tokens": spec.max_tokens,
        }
        t0 = time.monotonic()
        try:
            async with session.post(f"{spec.url}/v1/chat/completions", json=body) as resp:
                data = await resp.read()
                if resp.status != 200:
                    kind = f"http {resp.status}"
                    report.errors[kind] = report.errors.get(kind, 0) + 1
                    report.failed += 1
                    return
                json.loads(data)["choices"][0]
        except Exception as exc:  # every failure is counted by kind, none stops the run
            kind = error_kind(exc)
            report.errors[kind] = report.errors.get(kind, 0) + 1
            report.failed += 1
            return
        report.ok += 1
        latencies.append((time.monotonic() - t0) * 1000)

    async def worker(session: aiohttp.ClientSession) -> None:
        nonlocal issued
        while more():
            i = issued
            issued += 1
            if spec.rate:  # request i starts no earlier than i / rate s into the run
                await asyncio.sleep(max(0.0, start + i / spec.rate - time.monotonic()))
                if time.monotonic() >= deadline or (stop and stop.is_set()):
                    return
            report.sent += 1
            await one(session, i)

    async def watcher(session: aiohttp.ClientSession) -> None:
        while more():
            try:
                async with session.get(f"{spec.url}/workers") as resp:
                    if resp.status == 200:
                        data = await resp.json()
                        watch.sample(time.monotonic() - start, data.get("workers", []))
            except Exception:  # the router itself not answering is the requests' to count
                pass
            await asyncio.sleep(WATCH_INTERVAL)

    timeout = aiohttp.ClientTimeout(total=spec.timeout)
    conn = aiohttp.TCPConnector(limit=spec.concurrency + 2)
    async with aiohttp.ClientSession(headers=headers, timeout=timeout, connector=conn) as session:
        tasks = [worker(session) for _ in range(spec.concurrency)]
        if spec.watch:
            tasks.append(watcher(session))
        await asyncio.gather(*tasks)
    report.seconds = time.monotonic() - start
    watch.close(report.seconds)
    report.outages = {
        u: [(round(a, 2), round(b, 2)) for a, b in o] for u, o in watch.outages.items()
    }
    report.out_s = {u: round(sum(b - a for a, b in o), 2) for u, o in watch.outages.items()}
    for url in watch.known - set(report.out_s):
        report.out_s[url] = 0.0
    report.p50_ms, report.p99_ms = percentile(latencies, 50), percentile(latencies, 99)
    report.rps = report.ok / report.seconds if report.seconds else 0.0
    return report


def run(spec: LoadSpec, stop: threading.Event | None = None) -> LoadReport:
    """Send the load; returns when the count or the duration is reached, or ``stop`` is set."""
    spec.check()
    return asyncio.run(_run(spec, stop))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python3 -m llmfleet.loadgen",
        description="Bounded chat-completion load against a loopback or lab endpoint "
        "(a server or the router); prints sent, failed by kind, p50/p99 and, with --watch, "
        "the time each backend was out of the router.",
    )
    p.add_argument("url", help="base URL: http://127.0.0.1:PORT or a lab host's")
    p.add_argument(
        "--requests", type=int, required=True, help=f"at most this many (<= {MAX_REQUESTS})"
    )
    p.add_argument(
        "--duration", type=float, required=True, help=f"at most this long, s (<= {MAX_DURATION:g})"
    )
    p.add_argument("--concurrency", type=int, default=2, help="requests in flight (default 2)")
    p.add_argument(
        "--rate", type=float, default=0.0, help="requests started per second (default: unpaced)"
    )
    p.add_argument("--model", default="tiny", help="model name to ask for (default tiny)")
    p.add_argument("--max-tokens", type=int, default=4, help="tokens per completion (default 4)")
    p.add_argument(
        "--api-key-env", metavar="VAR", help="environment variable with the endpoint key"
    )
    p.add_argument(
        "--watch", action="store_true", help="the URL is an smg router: time each backend out"
    )
    p.add_argument("--json", action="store_true", help="the report as JSON")
    a = p.parse_args(argv)
    spec = LoadSpec(
        url=a.url.rstrip("/"),
        requests=a.requests,
        duration=a.duration,
        concurrency=a.concurrency,
        rate=a.rate,
        model=a.model,
        max_tokens=a.max_tokens,
        api_key=os.environ.get(a.api_key_env) if a.api_key_env else None,
        watch=a.watch,
    )
    try:
        report = run(spec)
    except ValueError as exc:
        print(f"llmfleet.loadgen: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(report.to_json(), indent=2) if a.json else report.line())
    return 0 if report.failed == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
