"""What the monitor deploy applies, decided before any host is touched.

From the inventory's host plans (``llmfleet/validate.py``) this builds, once for the
fleet: who runs Prometheus and Alertmanager, every scrape target (each engine's
``/metrics``, each host's node exporter, each accelerator exporter at its vendor's
port, the router where a host runs one) with a ``host`` label naming the inventory
host, and the text of ``prometheus.yml``, ``alertmanager.yml`` and the alert rules
(``llmfleet/alertrules.py``).  Problems name the host, the setting and the fix; a
host with one is left out of the targets and fails alone.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

from .catalog import NO_VENDOR, Catalog
from .errors import Problem
from .settings import Settings
from .unitfile import jinja_env
from .validate import HostPlan

MONITORING_DIR = Path(__file__).resolve().parent.parent / "files" / "monitoring"
# on the monitoring host (Debian's prometheus and prometheus-alertmanager packages)
PROMETHEUS_CONFIG = "/etc/prometheus/prometheus.yml"
ALERTMANAGER_CONFIG = "/etc/prometheus/alertmanager.yml"
RULES_FILE = "/etc/prometheus/llmfleet-alerts.yml"
# Debian's packages: the node exporter (every host), Prometheus and Alertmanager
NODE_EXPORTER, PROMETHEUS, ALERTMANAGER = (
    "prometheus-node-exporter",
    "prometheus",
    "prometheus-alertmanager",
)
PACKAGES = (NODE_EXPORTER, PROMETHEUS, ALERTMANAGER)
# scrape jobs, one per kind of target
ENGINE, NODE, ACCELERATOR, ROUTER = "engine", "node", "accelerator", "router"


@lru_cache(maxsize=1)
def exporters() -> dict[str, dict[str, Any]]:
    """files/monitoring/exporters.yaml: vendor -> its accelerator exporter."""
    return yaml.safe_load((MONITORING_DIR / "exporters.yaml").read_text())


@dataclass(frozen=True)
class Watched:
    """One inventory host as monitoring sees it."""

    host: str
    address: str
    settings: Settings
    engine: str | None = None  # the recipe's engine, when the host serves
    port: int | None = None  # the engine's port
    vendor: str | None = None  # the accelerator exporter's id in exporters.yaml
    ttft_target_s: float | None = None  # the recipe's benchmark p99 time to first token
    weights_gb: float | None = None  # the recipe's weights on disk


@dataclass(frozen=True)
class Target:
    host: str
    job: str
    address: str  # HOST:PORT as Prometheus reaches it
    path: str = "/metrics"
    labels: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class MonitorPlan:
    server: Watched
    watched: tuple[Watched, ...]
    targets: tuple[Target, ...]
    prometheus_yml: str
    alertmanager_yml: str
    rules_yml: str
    problems: tuple[Problem, ...] = field(default_factory=tuple)

    def problems_of(self, host: str) -> list[Problem]:
        return [p for p in self.problems if p.host == host]


def _recipe_ttft(catalog: Catalog, recipe_id: str) -> float | None:
    """The guide's measured p99 time to first token, seconds (benchmark.results)."""
    bench = catalog.recipe(recipe_id).benchmark or {}
    p99 = ((bench.get("results") or {}).get("ttft_ms") or {}).get("p99")
    return float(p99) / 1000 if p99 is not None else None


def watched(catalog: Catalog, plan: HostPlan) -> tuple[Watched | None, list[Problem]]:
    """The host's monitoring view, or None with the problems that keep it out."""
    s, host = plan.settings, plan.host
    # a host that serves nothing is still watched (node and accelerator exporters)
    unset = {"recipe", "hardware"} if plan.recipe is None else set()
    problems = [p for p in plan.problems if p.severity == "error" and p.field not in unset]
    if problems:
        return None, problems
    vendor = s.accelerator_exporter
    if vendor is None and plan.hardware in catalog.hardware:
        vendor = catalog.hardware[plan.hardware].vendor
    if vendor == NO_VENDOR:
        vendor = None
    if vendor is not None and vendor not in exporters():
        fix = f"one of {', '.join(sorted(exporters()))} or none"
        return None, [Problem(host, "accelerator_exporter", f"no exporter {vendor!r}", fix=fix)]
    r = plan.rendered
    if r is None:
        return Watched(host, plan.address, s, vendor=vendor), []
    metrics = catalog.engines[r.engine]["metrics"]
    if metrics["flags"] and not s.monitoring:
        return None, [
            Problem(
                host,
                "monitoring",
                f"{r.engine} serves {metrics['path']} only with {' '.join(metrics['flags'])}",
                fix="set monitoring: true (host or group data) and re-run deploys/serve.py",
            )
        ]
    return Watched(
        host,
        plan.address,
        s,
        engine=r.engine,
        port=r.port,
        vendor=vendor,
        ttft_target_s=_recipe_ttft(catalog, r.id),
        weights_gb=catalog.weights_gb(r.model_repo),
    ), []


def server_name(plans: list[HostPlan]) -> str:
    """The monitoring host: the first ``monitor_host`` any host names, else the
    inventory's first host."""
    named = [p.settings.monitor_host for p in plans if p.settings.monitor_host]
    return named[0] if named else plans[0].host


def targets(hosts: list[Watched], catalog: Catalog) -> list[Target]:
    out: list[Target] = []
    for w in hosts:
        s = w.settings
        out.append(Target(w.host, NODE, f"{w.address}:{s.node_exporter_port}"))
        if w.engine:
            path = catalog.engines[w.engine]["metrics"]["path"]
            out.append(
                Target(w.host, ENGINE, f"{w.address}:{w.port}", path, (("engine", w.engine),))
            )
        if w.vendor:
            port = exporters()[w.vendor]["port"]
            out.append(
                Target(w.host, ACCELERATOR, f"{w.address}:{port}", labels=(("vendor", w.vendor),))
            )
        if s.router:  # this host runs the fleet's router (deploys/router.py)
            out.append(Target(w.host, ROUTER, f"{w.address}:{s.router_metrics_port}"))
    return out


def _static_configs(targets: list[Target]) -> str:
    """One static config per target, its host (and path) as labels, as JSON (which
    is YAML): names and paths cannot break the file however they are spelled."""
    configs = [
        {
            "targets": [t.address],
            "labels": {"host": t.host, "__metrics_path__": t.path, **dict(t.labels)},
        }
        for t in targets
    ]
    return json.dumps(configs)


def prometheus_config(server: Watched, targets: list[Target]) -> str:
    s = server.settings
    jobs = {
        job: _static_configs([t for t in targets if t.job == job])
        for job in (ENGINE, NODE, ACCELERATOR, ROUTER)
        if any(t.job == job for t in targets)
    }
    return (
        jinja_env()
        .get_template("prometheus.yml.j2")
        .render(
            interval=s.scrape_interval,
            alertmanager=f"127.0.0.1:{s.alertmanager_port}",
            rules=RULES_FILE,
            jobs=jobs,
            self_target=f"127.0.0.1:{s.prometheus_port}",
            host=server.host,
        )
    )


def alertmanager_config(server: Watched) -> str:
    return (
        jinja_env()
        .get_template("alertmanager.yml.j2")
        .render(webhook=server.settings.alert_webhook_url)
    )


def monitor_plan(catalog: Catalog, plans: list[HostPlan]) -> MonitorPlan:
    """The fleet's monitoring, from every inventory host's plan (``--limit`` does not
    narrow it: Prometheus watches the whole inventory)."""
    from .alertrules import rules_text

    problems: list[Problem] = []
    hosts: list[Watched] = []
    for plan in plans:
        w, found = watched(catalog, plan)
        problems += found
        if w is not None:
            hosts.append(w)
    name = server_name(plans)
    server = next((w for w in hosts if w.host == name), None)
    if server is None:  # no Prometheus for anyone: every host says why
        known = {p.host for p in plans}
        why = "is not in the inventory" if name not in known else "has problems of its own"
        problems += [
            Problem(p.host, "monitor_host", f"the monitoring host {name} {why}", fix="name another")
            for p in plans
        ]
        server = Watched(name, name, Settings())
    tg = targets(hosts, catalog)
    return MonitorPlan(
        server=server,
        watched=tuple(hosts),
        targets=tuple(tg),
        prometheus_yml=prometheus_config(server, tg),
        alertmanager_yml=alertmanager_config(server),
        rules_yml=rules_text(hosts, catalog),
        problems=tuple(problems),
    )
