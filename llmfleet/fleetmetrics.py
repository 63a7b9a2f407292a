"""One host's serving numbers (``llmfleet top``), from Prometheus samples.

Pure: given the samples of two scrapes of a host's endpoints (engine, node
exporter, accelerator exporter), or Prometheus' answers to the same questions,
this computes the row ``top`` shows.  The exposition format is parsed by
``prometheus_client`` (the Prometheus project's own Python client); the
quantile is estimated the way PromQL's ``histogram_quantile`` does it (linear
within the bucket), so a direct scrape and a Prometheus query agree.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

# (name, labels, value)
Sample = tuple[str, dict[str, str], float]
SERVER_UNIT = "llmfleet-serve.service"
RESTARTS = "node_systemd_service_restart_total"


@dataclass
class Row:
    """What ``top`` shows for one host; None: not known (no endpoint, no traffic)."""

    host: str
    engine: str | None = None
    up: bool | None = None
    running: float | None = None
    waiting: float | None = None
    kv_cache_pct: float | None = None
    gen_tok_s: float | None = None
    ttft_p50_s: float | None = None
    ttft_p99_s: float | None = None
    restarts: float | None = None
    gpu_util_pct: float | None = None
    gpu_mem_used_gb: float | None = None
    gpu_mem_total_gb: float | None = None
    error: str | None = None

    def as_json(self) -> dict[str, Any]:
        return {
            k: (None if isinstance(v, float) and math.isnan(v) else v)
            for k, v in asdict(self).items()
        }


def parse(text: str) -> list[Sample]:
    """Every sample of an exposition text (counters keep their ``_total`` name)."""
    return [
        (s.name, dict(s.labels), float(s.value))
        for family in text_string_to_metric_families(text)
        for s in family.samples
    ]


def total(samples: Iterable[Sample], metric: str, **labels: str) -> float | None:
    """The sum of ``metric``'s samples (matching ``labels``); None when there are none."""
    found = [
        v
        for n, lab, v in samples
        if n == metric and all(lab.get(k) == w for k, w in labels.items())
    ]
    return sum(found) if found else None


def average(samples: Iterable[Sample], name: str) -> float | None:
    found = [v for n, _, v in samples if n == name]
    return sum(found) / len(found) if found else None


def buckets(samples: Iterable[Sample], histogram: str) -> dict[float, float]:
    """``le`` -> cumulative count of a histogram, summed over its series."""
    out: dict[float, float] = {}
    for name, labels, value in samples:
        if name == f"{histogram}_bucket" and "le" in labels:
            le = float(labels["le"])
            out[le] = out.get(le, 0.0) + value
    return out


def quantile(q: float, cumulative: dict[float, float]) -> float | None:
    """PromQL's ``histogram_quantile`` over cumulative bucket counts; None when empty."""
    if not cumulative:
        return None
    bounds = sorted(cumulative)
    count = cumulative[bounds[-1]]
    if count <= 0:
        return None
    rank = q * count
    lower, below = 0.0, 0.0
    for bound in bounds:
        seen = cumulative[bound]
        if seen >= rank:
            if math.isinf(bound):  # in the open top bucket: the highest finite bound
                return lower
            if seen == below:
                return bound
            return lower + (bound - lower) * (rank - below) / (seen - below)
        lower, below = bound, seen
    return bounds[-1]


def delta_buckets(before: dict[float, float], after: dict[float, float]) -> dict[float, float]:
    """The requests between two scrapes; all of ``after`` when the engine restarted."""
    if not before or any(after.get(le, 0.0) < v for le, v in before.items()):
        return after
    return {le: v - before.get(le, 0.0) for le, v in after.items()}


def engine_numbers(
    names: dict[str, Any], before: list[Sample], after: list[Sample], seconds: float
) -> dict[str, float | None]:
    """Running, waiting, KV-cache %, generation tok/s and TTFT p50/p99 from two scrapes
    of an engine's /metrics ``seconds`` apart (the engine file's ``metrics`` names)."""
    tokens_now = total(after, names["generation_tokens"])
    tokens_then = total(before, names["generation_tokens"])
    rate = None
    if tokens_now is not None and tokens_then is not None and seconds > 0:
        rate = max(tokens_now - tokens_then, 0.0) / seconds if tokens_now >= tokens_then else None
    window = delta_buckets(buckets(before, names["ttft"]), buckets(after, names["ttft"]))
    kv = total(after, names["kv_cache"])
    return {
        "running": total(after, names["running"]),
        "waiting": total(after, names["waiting"]),
        "kv_cache_pct": kv * 100 if kv is not None else None,
        "gen_tok_s": rate,
        "ttft_p50_s": quantile(0.5, window),
        "ttft_p99_s": quantile(0.99, window),
    }


def gpu_numbers(names: dict[str, Any], samples: list[Sample]) -> dict[str, float | None]:
    """Utilisation (mean over devices) and memory (sum over devices, GB) from an
    accelerator exporter's samples (exporters.yaml ``metrics`` names)."""
    unit = float(names["mem_unit"]) / 1e9
    used = total(samples, names["mem_used"])
    size = total(samples, names["mem_total"]) if names.get("mem_total") else None
    if size is None and names.get("mem_free") and used is not None:
        free = total(samples, names["mem_free"])
        size = used + free if free is not None else None
    return {
        "gpu_util_pct": average(samples, names["util"]),
        "gpu_mem_used_gb": used * unit if used is not None else None,
        "gpu_mem_total_gb": size * unit if size is not None else None,
    }


def restarts(samples: list[Sample]) -> float | None:
    """The server unit's restarts, from the node exporter's systemd collector."""
    return total(samples, RESTARTS, name=SERVER_UNIT)
