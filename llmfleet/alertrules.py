"""The alert rules file, rendered from data (files/monitoring/alerts.yaml and the
vendor exporters' error alerts in exporters.yaml) for the hosts Prometheus watches.

Thresholds are settings, so host or group data can change them per host: hosts
that share an engine (or accelerator vendor), a threshold and a duration get one
rule, selected by their ``host`` label; hosts that differ get a rule of their own
under the same alert name.  No relabelling, and ``promtool check rules`` reads the
result like any hand-written file.
"""

from __future__ import annotations

from collections import defaultdict
from functools import lru_cache
from string import Template
from typing import Any

import yaml

from .catalog import Catalog
from .monitorplan import ACCELERATOR, ENGINE, MONITORING_DIR, Watched, exporters

GROUP = "llmfleet"
DEFAULT_TTFT_P99_S = 30.0  # when neither the setting nor the recipe says (FLEET-NOTES)


@lru_cache(maxsize=1)
def alerts() -> dict[str, dict[str, Any]]:
    return yaml.safe_load((MONITORING_DIR / "alerts.yaml").read_text())


def threshold(w: Watched, name: str) -> float | None:
    """A host's threshold: its setting, or the default the recipe implies."""
    value = getattr(w.settings, name)
    if value is not None:
        return value
    if name == "alert_ttft_p99_s":
        return w.ttft_target_s if w.ttft_target_s is not None else DEFAULT_TTFT_P99_S
    if name == "alert_disk_free_gb":
        return w.weights_gb  # room for one more copy: the next revision
    return None


def _seconds(w: Watched, spec: int | str) -> int:
    return int(getattr(w.settings, spec) if isinstance(spec, str) else spec)


def _duration(seconds: int) -> str:
    return f"{seconds // 60}m" if seconds and seconds % 60 == 0 else f"{seconds}s"


def _number(value: float) -> str:
    return f"{value:g}"


def selector(job: str, hosts: list[str]) -> str:
    """Label matchers of these hosts' series of one scrape job (host names are
    matched exactly: a dot in a name is not a regex wildcard)."""
    names = "|".join(sorted(h.replace(".", "\\\\.") for h in hosts))
    return f'job="{job}",host=~"{names}"'


def _covered(scope: str, hosts: list[Watched]) -> list[Watched]:
    if scope == ENGINE:
        return [w for w in hosts if w.engine]
    if scope == ACCELERATOR:
        return [w for w in hosts if w.vendor]
    return list(hosts)


def _kind(scope: str, w: Watched) -> str:
    """What changes the metric names: the engine, the vendor, or nothing (node)."""
    if scope == ENGINE:
        return w.engine or ""
    return (w.vendor or "") if scope == ACCELERATOR else ""


def _names(catalog: Catalog, scope: str, kind: str) -> dict[str, str]:
    if scope == ENGINE:
        return {k: str(v) for k, v in catalog.engines[kind]["metrics"].items()}
    if scope == ACCELERATOR:
        return {k: str(v) for k, v in exporters()[kind]["metrics"].items() if v is not None}
    return {}


def _rule(name: str, spec: dict, expr: str, seconds: int, variant: str) -> dict[str, Any]:
    """One rule; ``variant`` (what its hosts share: engine or vendor, threshold, duration)
    is a label, so the rules of one alert differ (promtool's duplicate check) and the
    alert says which threshold it crossed."""
    rule: dict[str, Any] = {"alert": name, "expr": expr}
    if seconds:
        rule["for"] = _duration(seconds)
    rule["labels"] = {"severity": spec["severity"], "rule": variant}
    rule["annotations"] = {"summary": spec["summary"]}
    return rule


def rules(hosts: list[Watched], catalog: Catalog) -> list[dict[str, Any]]:
    """Every alert rule for these hosts, in a stable order."""
    out: list[dict[str, Any]] = []
    for name, spec in alerts().items():
        groups: dict[tuple, list[str]] = defaultdict(list)
        for w in _covered(spec["scope"], hosts):
            limit = threshold(w, spec["threshold"]) if spec.get("threshold") else 0.0
            if limit is None:  # nothing to compare with (no recipe for the disk alert)
                continue
            key = (_kind(spec["scope"], w), limit, _seconds(w, spec["for"]))
            groups[key].append(w.host)
        for (kind, limit, seconds), names in sorted(groups.items()):
            values = {
                **_names(catalog, spec["scope"], kind),
                "sel": selector(spec["scope"], names),
                "threshold": _number(limit),
            }
            expr = Template(spec["expr"]).substitute(values)
            parts = [kind or spec["scope"]]
            if spec.get("threshold"):
                parts.append(f"{spec['threshold']}={values['threshold']}")
            if seconds:
                parts.append(f"for {_duration(seconds)}")
            out.append(_rule(name, spec, expr, seconds, " ".join(parts)))
    out += _accelerator_errors(hosts)
    return out


def _accelerator_errors(hosts: list[Watched]) -> list[dict[str, Any]]:
    """Each vendor's hardware-error alerts (exporters.yaml ``errors``), for its hosts."""
    by_vendor: dict[str, list[str]] = defaultdict(list)
    for w in hosts:
        if w.vendor:
            by_vendor[w.vendor].append(w.host)
    out = []
    for vendor, names in sorted(by_vendor.items()):
        for alert, expr in exporters()[vendor]["errors"].items():
            spec = {
                "severity": "critical",
                "summary": f"{{{{ $labels.host }}}}: {alert} ({vendor} exporter)",
            }
            sel = selector(ACCELERATOR, names)
            out.append(_rule(alert, spec, Template(expr).substitute(sel=sel), 0, vendor))
    return out


def rules_text(hosts: list[Watched], catalog: Catalog) -> str:
    doc = {"groups": [{"name": GROUP, "rules": rules(hosts, catalog)}]}
    head = "# Written by llmfleet (deploys/monitor.py) from files/monitoring/alerts.yaml.\n"
    return head + yaml.safe_dump(doc, sort_keys=False, width=200)
