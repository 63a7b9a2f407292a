"""A host's benchmark as comparison rows and JSON: each figure beside the guide's
(as a ratio, with the hardware named) and beside the previous release's on the same host.

Pure: the CLI draws the rows as tables, scripts read :func:`host_json`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .bench import HostBench
from .benchmetrics import FIGURES, Figure, ratio, worse_by_pct
from .benchstore import BenchRun


@dataclass(frozen=True)
class Row:
    """One figure of one run: ours, the guide's and the ratio, the previous release's."""

    figure: Figure
    ours: float | None
    guide: float | None
    vs_guide: float | None  # ours / guide
    previous: float | None
    worse_pct: float | None  # vs previous: positive = worse


def rows(run: BenchRun, guide: Any, previous: BenchRun | None) -> list[Row]:
    """Every figure the client reports, in FIGURES order."""
    out = []
    for fig in FIGURES:
        ours = run.metrics.get(fig.key)
        theirs = guide.published.get(fig.key) if guide else None
        prev = previous.metrics.get(fig.key) if previous else None
        out.append(Row(fig, ours, theirs, ratio(ours, theirs), prev, worse_by_pct(fig, ours, prev)))
    return out


def guide_caption(hb: HostBench) -> str:
    """Which guide figures the table shows, on which hardware, and whether the workload
    matched (a ratio across workloads is a hint, not a verdict)."""
    if not hb.guide:
        return f"guide: recipe {hb.recipe} has no published figures"
    same = "same workload" if hb.guide_same_workload else "OTHER workload"
    return (
        f"guide: {hb.guide_recipe} on {hb.guide_hardware}, {hb.guide.params.describe()} "
        f"({same}); x guide = ours / guide's"
    )


def host_json(hb: HostBench, plot: str | None = None) -> dict[str, Any]:
    """One host for ``llmfleet bench --json``: every run with its comparisons."""
    runs = []
    for i, run in enumerate(hb.runs):
        prev = hb.previous[i] if i < len(hb.previous) else None
        runs.append(
            {
                "params": run.params.to_json(),
                "metrics": run.metrics.to_json(),
                "repeats_output_tok_s": list(run.repeats),
                "stored": str(hb.stored[i]) if i < len(hb.stored) else None,
                "previous": (
                    {"release": prev.release, "metrics": prev.metrics.to_json()} if prev else None
                ),
                "vs_guide": {
                    r.figure.key: r.vs_guide for r in rows(run, hb.guide, prev) if r.vs_guide
                },
                "worse_than_previous_pct": {
                    r.figure.key: r.worse_pct
                    for r in rows(run, hb.guide, prev)
                    if r.worse_pct is not None
                },
            }
        )
    guide = None
    if hb.guide:
        guide = {
            "recipe": hb.guide_recipe,
            "hardware": hb.guide_hardware,
            "same_workload": hb.guide_same_workload,
            "params": hb.guide.params.to_json(),
            "published": hb.guide.published.to_json(),
            "command": hb.guide.command,
        }
    return {
        "host": hb.host,
        "ok": hb.ok,
        "error": hb.error or None,
        "release": hb.release,
        "recipe": hb.recipe,
        "hardware": hb.hardware,
        "guide": guide,
        "runs": runs,
        "plot": plot,
    }


def fmt(value: float | None, digits: int = 2) -> str:
    if value is None:
        return "-"
    return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.{digits}f}"
