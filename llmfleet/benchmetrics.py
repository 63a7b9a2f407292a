"""What a serving benchmark measured, as one typed record, and how two records compare.

The same record holds a run of the client on a host, a guide's published
figures (only the ones it printed) and a previous release's run, so the
table, the JSON, the plot and the rollout gate all read one shape.  Figures
have flat names (``tpot_ms.p99``, ``output_tok_s``) so a comparison is a loop
over :data:`FIGURES`, never a field-by-field copy.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

# the latency families the client reports, each at mean / p50 / p99
LATENCIES = ("ttft", "tpot", "itl", "e2el")
STATS = ("mean", "p50", "p99")
LATENCY_LABELS = {"ttft": "TTFT", "tpot": "TPOT", "itl": "ITL", "e2el": "E2E latency"}


@dataclass(frozen=True)
class Figure:
    """One reported number: its flat key, how a person reads it, and which way is better."""

    key: str
    label: str
    unit: str
    higher_is_better: bool


FIGURES: tuple[Figure, ...] = (
    Figure("output_tok_s", "output tok/s", "tok/s", True),
    Figure("total_tok_s", "total tok/s", "tok/s", True),
    *(
        Figure(f"{lat}_ms.{stat}", f"{LATENCY_LABELS[lat]} {stat}", "ms", False)
        for lat in LATENCIES
        for stat in STATS
    ),
    Figure("failed", "failed requests", "", False),
)
FIGURE_BY_KEY = {f.key: f for f in FIGURES}


@dataclass(frozen=True)
class Metrics:
    """Flat figures (``FIGURES`` keys -> value; a guide prints only some) plus run facts."""

    figures: dict[str, float] = field(default_factory=dict)
    completed: int | None = None
    duration_s: float | None = None

    def get(self, key: str) -> float | None:
        return self.figures.get(key)

    def to_json(self) -> dict[str, Any]:
        """Nested the way people read it: ``{"tpot_ms": {"mean", "p50", "p99"}, ...}``."""
        out: dict[str, Any] = {}
        for key, value in self.figures.items():
            group, _, stat = key.partition(".")
            if stat:
                out.setdefault(group, {})[stat] = value
            else:
                out[key] = value
        out["completed"] = self.completed
        out["duration_s"] = self.duration_s
        return out

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Metrics:
        figures: dict[str, float] = {}
        for key, value in data.items():
            if isinstance(value, dict):
                for stat, v in value.items():
                    if f"{key}.{stat}" in FIGURE_BY_KEY and v is not None:
                        figures[f"{key}.{stat}"] = float(v)
            elif key in FIGURE_BY_KEY and value is not None:
                figures[key] = float(value)
        return cls(figures, data.get("completed"), data.get("duration_s"))


def from_client_result(result: dict[str, Any]) -> Metrics:
    """The figures of one ``vllm bench serve --save-result`` file."""
    figures: dict[str, float] = {
        "output_tok_s": float(result["output_throughput"]),
        "total_tok_s": float(result["total_token_throughput"]),
        "failed": float(result.get("failed", 0)),
    }
    for lat in LATENCIES:
        for stat, name in (("mean", "mean"), ("p50", "p50"), ("p99", "p99")):
            value = result.get(f"{name}_{lat}_ms")
            if value is not None:
                figures[f"{lat}_ms.{stat}"] = float(value)
    return Metrics(figures, int(result.get("completed", 0)), float(result.get("duration", 0)))


def from_guide_results(results: dict[str, Any]) -> Metrics:
    """A recipe's ``benchmark.results`` (the guide's printout): ``median`` is p50; a
    ``tpot_target_ms`` (the Ascend guide's SLO) stands for the mean TPOT it aims at."""
    data = dict(results or {})
    for lat in LATENCIES:
        stats = data.get(f"{lat}_ms")
        if isinstance(stats, dict) and "median" in stats:
            data[f"{lat}_ms"] = {("p50" if k == "median" else k): v for k, v in stats.items()}
    if "tpot_target_ms" in data:
        data.setdefault("tpot_ms", {}).setdefault("mean", data["tpot_target_ms"])
    return Metrics.from_json(data)


def ratio(ours: float | None, theirs: float | None) -> float | None:
    """ours / theirs, or None when either is missing or theirs is zero."""
    if ours is None or theirs in (None, 0):
        return None
    return ours / theirs


def worse_by_pct(fig: Figure, new: float | None, old: float | None) -> float | None:
    """How much worse ``new`` is than ``old`` in percent (negative: better)."""
    if new is None or old in (None, 0):
        return None
    change = (new - old) / old * 100
    return -change if fig.higher_is_better else change


# what the rollout gate watches: throughput and the tail of the decode speed
GATE_FIGURES = ("output_tok_s", "tpot_ms.p99")
# A latency change smaller than this is not judged, however large in percent: the client
# sees decode time only through the HTTP stream, and a server that coalesces its output
# chunks (vLLM does when its API process falls behind the engine, as the lab's tiny CPU
# model does) shows a TPOT of 0-3 ms that swings by thousands of percent between runs.
GATE_MIN_MS = 1.0


def gate_verdict(new: Metrics, old: Metrics, pct: float) -> list[str]:
    """Why ``new`` fails against ``old`` at ``pct`` percent (empty: it passes)."""
    why = []
    for key in GATE_FIGURES:
        fig = FIGURE_BY_KEY[key]
        worse = worse_by_pct(fig, new.get(key), old.get(key))
        if fig.unit == "ms" and abs((new.get(key) or 0) - (old.get(key) or 0)) < GATE_MIN_MS:
            continue
        if worse is not None and worse > pct:
            why.append(
                f"{fig.label} {new.get(key):.2f} vs {old.get(key):.2f} "
                f"({worse:.1f}% worse > {pct:g}%)"
            )
    if (new.get("failed") or 0) > (old.get("failed") or 0):
        why.append(f"failed requests {new.get('failed'):.0f} vs {old.get('failed') or 0:.0f}")
    return why
