"""The latency-throughput picture of a sweep: one PNG per host and release.

Operators read these curves, not tables: where the release's decode latency
(TPOT) and time to first token climb as concurrency buys throughput, the
previous release's curve on the same host beside it, and the guide's
published points (named with their hardware) as stars.  Drawn with
matplotlib (Agg, no display), log-scaled so a CPU lab and an 8-GPU guide fit
one frame.
"""

from __future__ import annotations

from pathlib import Path

from .bench import HostBench
from .benchstore import BenchRun

PANELS = (("tpot_ms", "TPOT (ms per output token)"), ("ttft_ms", "TTFT (ms)"))


def _curve(ax, runs: list[BenchRun], key: str, label: str, style: dict) -> None:
    runs = sorted(runs, key=lambda r: r.params.concurrency or 0)
    xs = [r.metrics.get("output_tok_s") for r in runs]
    for stat, dash in (("p50", "-"), ("p99", ":")):
        ys = [r.metrics.get(f"{key}.{stat}") for r in runs]
        pts = [(x, y) for x, y in zip(xs, ys, strict=True) if x and y]
        if pts:
            ax.plot(*zip(*pts, strict=True), dash, marker="o", label=f"{label} {stat}", **style)
    for r, x in zip(runs, xs, strict=True):
        y = r.metrics.get(f"{key}.p50")
        if x and y and style.get("color") == "C0":
            ax.annotate(
                f"c={r.params.concurrency}", (x, y), textcoords="offset points", xytext=(4, -10)
            )


def plot_sweep(hb: HostBench, previous: list[BenchRun], out: Path) -> Path:
    """Write the picture of ``hb``'s sweep (and ``previous``, the release before's) to
    ``out`` (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import LogLocator, NullFormatter, ScalarFormatter

    fig, axes = plt.subplots(1, 2, figsize=(13, 5.2))
    for ax, (key, title) in zip(axes, PANELS, strict=True):
        _curve(ax, hb.runs, key, f"release {hb.release}", {"color": "C0"})
        if previous:
            _curve(ax, previous, key, f"previous {previous[0].release}", {"color": "0.55"})
        for g in hb.guide_points:
            x, y = g.published.get("output_tok_s"), g.published.get(f"{key}.p50")
            y = y or g.published.get(f"{key}.mean")
            if x and y:
                ax.plot([x], [y], "*", color="C3", markersize=14)
                ax.annotate(
                    f"guide c={g.params.concurrency} ({hb.guide_hardware})",
                    (x, y),
                    textcoords="offset points",
                    xytext=(-8, 8),
                    ha="right",
                    color="C3",
                )
        ax.set_xscale("log")
        ax.set_yscale("log")
        for axis in (ax.xaxis, ax.yaxis):  # 100, 1000 rather than 10^2, 10^3
            axis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
            axis.set_major_formatter(ScalarFormatter())
            axis.set_minor_formatter(NullFormatter())
        ax.margins(0.15)
        ax.set_xlabel("output tokens/s (whole endpoint)")
        ax.set_ylabel(title)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8, loc="best")
    wl = hb.runs[0].params if hb.runs else None
    fig.suptitle(
        f"{hb.host} ({hb.hardware}): {hb.recipe}, release {hb.release}"
        + (f"; in {wl.input_len} / out {wl.output_len}, {wl.num_prompts} prompts" if wl else "")
        + (
            f"; stars: {hb.guide_recipe}'s published points"
            if any(g.published.figures for g in hb.guide_points)
            else ""
        )
    )
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out
