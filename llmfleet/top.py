"""``llmfleet top INVENTORY``: the fleet's serving numbers, per host, refreshed in place.

Two sources, the same columns:

- **Prometheus** (when the monitor deploy put one up: ``monitor_host`` answers
  ``/-/ready``): one instant query per column over the whole fleet, rates and
  quantiles over the last minutes;
- **direct**: each host's endpoints scraped over HTTP (engine ``/metrics``, node
  exporter, accelerator exporter), twice ``interval`` apart for the rates and
  the TTFT quantiles of the requests in between.

Which metric names to read comes from the data (files/engines/*.yaml
``metrics``, files/monitoring/exporters.yaml), so a new engine or vendor needs
no code here.
"""

from __future__ import annotations

import time
import urllib.error
import urllib.request
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import requests

from . import fleetmetrics as fm
from .catalog import Catalog
from .monitorplan import ACCELERATOR, ENGINE, NODE, Watched, exporters, server_name, watched
from .validate import HostPlan

# per request: a loaded 2-core monitoring host can take seconds to answer
TIMEOUT = 10.0
FIELDS = (
    "running",
    "waiting",
    "kv_cache_pct",
    "gen_tok_s",
    "ttft_p50_s",
    "ttft_p99_s",
    "restarts",
    "gpu_util_pct",
    "gpu_mem_used_gb",
    "gpu_mem_total_gb",
)


class Fleet:
    """The hosts ``top`` watches, as the monitor deploy would (``monitorplan.watched``)."""

    def __init__(self, catalog: Catalog, plans: list[HostPlan]) -> None:
        self.catalog = catalog
        self.hosts: list[Watched] = []
        self.errors: dict[str, str] = {}
        for plan in plans:
            w, problems = watched(catalog, plan)
            if w is None:
                self.errors[plan.host] = "; ".join(str(p) for p in problems)
            else:
                self.hosts.append(w)
        self.server = next((w for w in self.hosts if w.host == server_name(plans)), None)

    def engine_names(self, w: Watched) -> dict[str, Any]:
        return self.catalog.engines[w.engine]["metrics"] if w.engine else {}

    def prometheus_url(self) -> str | None:
        if self.server is None:
            return None
        return f"http://{self.server.address}:{self.server.settings.prometheus_port}"

    def error_rows(self) -> list[fm.Row]:
        return [fm.Row(host=h, error=e) for h, e in self.errors.items()]


def _get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=TIMEOUT) as resp:
        return resp.read().decode()


def prometheus_ready(url: str | None) -> bool:
    if not url:
        return False
    try:
        _get(f"{url}/-/ready")
        return True
    except (urllib.error.URLError, OSError):
        return False


# --------------------------------------------------------------------------- direct


class DirectSource:
    """Scrapes every endpoint itself; keeps the last scrape for the rates."""

    name = "direct"

    def __init__(self, fleet: Fleet) -> None:
        self.fleet = fleet
        self.last: dict[str, tuple[float, list[fm.Sample]]] = {}

    def _scrape(self, w: Watched) -> dict[str, list[fm.Sample] | str]:
        urls = {NODE: f"http://{w.address}:{w.settings.node_exporter_port}/metrics"}
        if w.engine:
            path = self.fleet.engine_names(w)["path"]
            urls[ENGINE] = f"http://{w.address}:{w.port}{path}"
        if w.vendor:
            urls[ACCELERATOR] = f"http://{w.address}:{exporters()[w.vendor]['port']}/metrics"
        out: dict[str, list[fm.Sample] | str] = {}
        for job, url in urls.items():
            try:
                out[job] = fm.parse(_get(url))
            except (urllib.error.URLError, OSError, ValueError) as exc:
                out[job] = f"{url}: {getattr(exc, 'reason', exc)}"
        return out

    def rows(self) -> list[fm.Row]:
        hosts = self.fleet.hosts
        with ThreadPoolExecutor(max_workers=max(1, min(32, len(hosts)))) as pool:
            scraped = list(pool.map(self._scrape, hosts))
        now = time.monotonic()
        rows = [self._row(w, s, now) for w, s in zip(hosts, scraped, strict=True)]
        return rows + self.fleet.error_rows()

    def _row(self, w: Watched, scraped: dict[str, Any], now: float) -> fm.Row:
        row = fm.Row(host=w.host, engine=w.engine)
        errors = [v for v in scraped.values() if isinstance(v, str)]
        row.error = "; ".join(errors) or None
        engine = scraped.get(ENGINE)
        if w.engine:
            row.up = isinstance(engine, list)
        if isinstance(engine, list):
            then, before = self.last.get(w.host, (now, []))
            numbers = fm.engine_numbers(self.fleet.engine_names(w), before, engine, now - then)
            for key, value in numbers.items():
                setattr(row, key, value)
            self.last[w.host] = (now, engine)
        if isinstance(scraped.get(NODE), list):
            row.restarts = fm.restarts(scraped[NODE])
        if w.vendor and isinstance(scraped.get(ACCELERATOR), list):
            gpu = fm.gpu_numbers(exporters()[w.vendor]["metrics"], scraped[ACCELERATOR])
            for key, value in gpu.items():
                setattr(row, key, value)
        return row


# --------------------------------------------------------------------------- Prometheus


def _by_engine(fleet: Fleet, build: Callable[[dict[str, Any]], str]) -> str:
    """One PromQL expression over every engine in the fleet (their names differ)."""
    engines = sorted({w.engine for w in fleet.hosts if w.engine})
    return " or ".join(f"({build(fleet.catalog.engines[e]['metrics'])})" for e in engines)


def _by_vendor(fleet: Fleet, build: Callable[[dict[str, Any]], str]) -> str:
    vendors = sorted({w.vendor for w in fleet.hosts if w.vendor})
    return " or ".join(f"({build(exporters()[v]['metrics'])})" for v in vendors)


def _mem_total(m: dict[str, Any]) -> str:
    unit = f"{float(m['mem_unit']) / 1e9!r}"
    if m.get("mem_total"):
        return f'sum by (host) ({m["mem_total"]}{{job="{ACCELERATOR}"}}) * {unit}'
    return (
        f'(sum by (host) ({m["mem_used"]}{{job="{ACCELERATOR}"}}) + '
        f'sum by (host) ({m["mem_free"]}{{job="{ACCELERATOR}"}})) * {unit}'
    )


def queries(fleet: Fleet, window: str = "1m", ttft_window: str = "5m") -> dict[str, str]:
    """Column -> PromQL, answered per ``host`` label."""
    sel = f'{{job="{ENGINE}"}}'
    acc = f'{{job="{ACCELERATOR}"}}'

    def ttft(q: float) -> str:
        return _by_engine(
            fleet,
            lambda m: (
                f"histogram_quantile({q}, sum by (host, le) "
                f"(rate({m['ttft']}_bucket{sel}[{ttft_window}])))"
            ),
        )

    out = {
        "up": f"max by (host) (up{sel})",
        "running": _by_engine(fleet, lambda m: f"sum by (host) ({m['running']}{sel})"),
        "waiting": _by_engine(fleet, lambda m: f"sum by (host) ({m['waiting']}{sel})"),
        "kv_cache_pct": _by_engine(fleet, lambda m: f"max by (host) ({m['kv_cache']}{sel}) * 100"),
        "gen_tok_s": _by_engine(
            fleet, lambda m: f"sum by (host) (rate({m['generation_tokens']}{sel}[{window}]))"
        ),
        "ttft_p50_s": ttft(0.5),
        "ttft_p99_s": ttft(0.99),
        "restarts": f'max by (host) ({fm.RESTARTS}{{job="{NODE}",name="{fm.SERVER_UNIT}"}})',
        "gpu_util_pct": _by_vendor(fleet, lambda m: f"avg by (host) ({m['util']}{acc})"),
        "gpu_mem_used_gb": _by_vendor(
            fleet,
            lambda m: f"sum by (host) ({m['mem_used']}{acc}) * {float(m['mem_unit']) / 1e9!r}",
        ),
        "gpu_mem_total_gb": _by_vendor(fleet, _mem_total),
    }
    return {k: v for k, v in out.items() if v}


class PrometheusSource:
    """Asks the fleet's Prometheus, one instant query per column."""

    name = "prometheus"

    def __init__(self, fleet: Fleet, url: str) -> None:
        self.fleet, self.url = fleet, url

    def _query(self, expr: str) -> dict[str, float]:
        resp = requests.get(f"{self.url}/api/v1/query", params={"query": expr}, timeout=TIMEOUT)
        resp.raise_for_status()
        return {
            r["metric"].get("host", ""): float(r["value"][1]) for r in resp.json()["data"]["result"]
        }

    def rows(self) -> list[fm.Row]:
        answers = {col: self._query(expr) for col, expr in queries(self.fleet).items()}
        rows = []
        for w in self.fleet.hosts:
            row = fm.Row(host=w.host, engine=w.engine)
            for col, values in answers.items():
                if w.host in values:
                    value = values[w.host]
                    setattr(row, col, bool(value) if col == "up" else value)
            if w.engine and row.up is None:
                row.up = False
            rows.append(row)
        return rows + self.fleet.error_rows()


def source(fleet: Fleet, wanted: str = "auto") -> DirectSource | PrometheusSource:
    """``auto``: Prometheus when the monitoring host's answers, else direct scrapes."""
    url = fleet.prometheus_url()
    if wanted == "prometheus" or (wanted == "auto" and prometheus_ready(url)):
        if url is None:
            raise ValueError("no monitoring host in the inventory")
        return PrometheusSource(fleet, url)
    return DirectSource(fleet)
