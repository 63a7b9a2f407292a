"""``llmfleet bench``: the command, its options, its tables and its JSON."""

from __future__ import annotations

import argparse
from pathlib import Path

from rich.table import Table

from . import bench, benchstore
from .benchreport import fmt, guide_caption, host_json, rows
from .catalog import Catalog
from .cli_fleet import _fleet
from .errors import LlmfleetError
from .terminal import console, err, print_json


def add_parser(sub: argparse._SubParsersAction) -> None:
    b = sub.add_parser(
        "bench",
        help="run each host's recipe benchmark (the guide's workload) against its endpoint",
        description="Benchmark each host's current release with the guide's own workload "
        "(vllm bench serve, pinned in files/bench/client.yaml), keep the figures per host "
        "and release on this machine, and set them beside the guide's published figures "
        "and the previous release's on the same host.",
    )
    b.add_argument("inventory", help="a pyinfra inventory file, e.g. inventories/lab.py")
    b.add_argument("--limit", action="append", metavar="HOST", help="only this host")
    for name, what in (
        ("input-len", "prompt tokens"),
        ("output-len", "output tokens per request"),
        ("concurrency", "requests in flight at most"),
        ("num-prompts", "requests in all"),
    ):
        b.add_argument(f"--{name}", type=int, metavar="N", help=f"{what} (default: the guide's)")
    b.add_argument(
        "--sweep",
        metavar="C1,C2,...",
        help="one benchmark per concurrency, and a latency-throughput plot per host (PNG)",
    )
    b.add_argument(
        "--guide",
        metavar="RECIPE",
        help="compare with this recipe's published figures (default: the host's recipe)",
    )
    b.add_argument("--tokenizer", metavar="DIR", help="the model's tokenizer files (no Hub)")
    b.add_argument(
        "--results",
        type=Path,
        default=None,
        help="results directory (default $LLMFLEET_BENCH_DIR or ~/.local/share/llmfleet/bench)",
    )
    b.add_argument("--client-find-links", metavar="URL", help="wheelhouse for the client")
    b.add_argument("--client-index-url", metavar="URL", help="package index for the client")
    b.add_argument(
        "--repeat",
        type=int,
        default=1,
        metavar="N",
        help="run each workload N times and keep the best (a shared machine only slows "
        "runs down); the JSON lists every repeat's output tok/s",
    )
    b.add_argument("--timeout", type=float, default=3600, help="seconds per run (default 3600)")
    b.add_argument("--json", action="store_true", help="one object per host, for scripts")
    b.set_defaults(func=cmd_bench)


def request_from(a: argparse.Namespace) -> bench.Request:
    return bench.Request(
        overrides={
            "input_len": a.input_len,
            "output_len": a.output_len,
            "concurrency": a.concurrency,
            "num_prompts": a.num_prompts,
        },
        sweep=bench.sweep_values(a.sweep),
        guide=a.guide,
        tokenizer=a.tokenizer,
        results=a.results or benchstore.default_root(),
        client_source=bench.env_source(a.client_find_links, a.client_index_url),
        timeout=a.timeout,
        repeat=_positive(a.repeat, "--repeat"),
    )


def _positive(value: int, flag: str) -> int:
    if value < 1:
        raise LlmfleetError(f"{flag} {value}: 1 or more")
    return value


def cmd_bench(cat: Catalog, a: argparse.Namespace) -> int:
    req = request_from(a)
    if a.guide:
        cat.recipe(a.guide)  # an unknown id fails here, with the closest ones named
    hosts = _fleet(a.inventory, a.limit)
    say = err.print if a.json else (lambda m: console.print(m, highlight=False))
    results = bench.bench_fleet(cat, hosts, req, say=say)
    plots = {hb.host: _plot(hb, req) for hb in results if req.sweep and hb.ok}
    if a.json:
        print_json([host_json(hb, plots.get(hb.host)) for hb in results])
    else:
        for hb in results:
            show_host(hb, plots.get(hb.host), sweep=bool(req.sweep))
    return 0 if all(hb.ok for hb in results) else 1


def _plot(hb: bench.HostBench, req: bench.Request) -> str:
    from .benchplot import plot_sweep

    client_digest = hb.runs[0].client.get("digest", "")
    prev = [p for p in hb.previous if p]
    previous = []
    if prev:  # the previous release's points of the same sweep
        release = prev[0].release
        previous = [
            r
            for r in (
                benchstore.latest(req.results, hb.host, release, run.params, client_digest)
                for run in hb.runs
            )
            if r
        ]
    out = benchstore.path_for(req.results, hb.host, hb.release or "").with_suffix(".sweep.png")
    return str(plot_sweep(hb, previous, out))


def show_host(hb: bench.HostBench, plot: str | None, sweep: bool) -> None:
    if hb.error and not hb.runs:
        console.print(f"[red]{hb.host}: {hb.error}[/red]", highlight=False)
        return
    if sweep:
        _sweep_table(hb)
    else:
        _figures_table(hb)
    console.print(guide_caption(hb), highlight=False)
    for path in dict.fromkeys(str(p) for p in hb.stored):
        console.print(f"stored: {path}", highlight=False)
    if plot:
        console.print(f"plot: {plot}", highlight=False)
    if hb.error:
        console.print(f"[red]{hb.host}: {hb.error}[/red]", highlight=False)


def _figures_table(hb: bench.HostBench) -> None:
    run, prev = hb.runs[0], hb.previous[0]
    table = Table(
        title=f"{hb.host} ({hb.hardware}): {hb.recipe} release {hb.release}: "
        f"{run.params.describe()}"
    )
    table.add_column("figure")
    table.add_column(f"this release ({hb.hardware})", justify="right")
    table.add_column(f"guide ({hb.guide_hardware or '-'})", justify="right")
    table.add_column("x guide", justify="right")
    table.add_column(f"previous {prev.release if prev else '-'}", justify="right")
    table.add_column("vs previous", justify="right")
    for r in rows(run, hb.guide, prev):
        change = "-"
        if r.worse_pct is not None:
            colour = "red" if r.worse_pct > 0 else "green"
            word = "worse" if r.worse_pct > 0 else "better"
            change = f"[{colour}]{abs(r.worse_pct):.1f}% {word}[/{colour}]"
        table.add_row(
            r.figure.label + (f" ({r.figure.unit})" if r.figure.unit else ""),
            fmt(r.ours),
            fmt(r.guide),
            f"{r.vs_guide:.3f}" if r.vs_guide is not None else "-",
            fmt(r.previous),
            change,
        )
    console.print(table)


SWEEP_COLUMNS = (
    ("output tok/s", "output_tok_s"),
    ("total tok/s", "total_tok_s"),
    ("TTFT p50", "ttft_ms.p50"),
    ("TTFT p99", "ttft_ms.p99"),
    ("TPOT p50", "tpot_ms.p50"),
    ("TPOT p99", "tpot_ms.p99"),
    ("ITL p99", "itl_ms.p99"),
    ("E2E p99", "e2el_ms.p99"),
    ("failed", "failed"),
)


def _sweep_table(hb: bench.HostBench) -> None:
    table = Table(title=f"{hb.host} ({hb.hardware}): {hb.recipe} release {hb.release} sweep")
    table.add_column("concurrency", justify="right")
    for label, _ in SWEEP_COLUMNS:
        table.add_column(label + (" (ms)" if "p" in label[-3:] else ""), justify="right")
    table.add_column("output tok/s vs previous", justify="right")
    for run, prev in zip(hb.runs, hb.previous, strict=False):
        change = "-"
        if prev and prev.metrics.get("output_tok_s"):
            pct = run.metrics.get("output_tok_s") / prev.metrics.get("output_tok_s") * 100 - 100
            change = f"{pct:+.1f}% ({prev.release})"
        table.add_row(
            str(run.params.concurrency),
            *(fmt(run.metrics.get(key)) for _, key in SWEEP_COLUMNS),
            change,
        )
    console.print(table)
