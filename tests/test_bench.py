"""llmfleet bench: the guide's workload read from its command, the client's argv, figures,
results kept per host and release, the comparison rows, the plot and the rollout gate
(SSH and the client are faked here; tests/lab/test_bench_lab.py runs them for real)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from llmfleet import bench, benchclient, benchstore
from llmfleet.bench import HostBench, HostState, Request
from llmfleet.benchgate import BenchGate
from llmfleet.benchmetrics import (
    FIGURES,
    Metrics,
    from_client_result,
    from_guide_results,
    gate_verdict,
)
from llmfleet.benchreport import host_json, rows
from llmfleet.benchspec import (
    BenchParams,
    choose_params,
    guide_points,
    matching_point,
    params_from_command,
)
from llmfleet.benchstore import BenchRun
from llmfleet.errors import LlmfleetError
from llmfleet.rollout import roll

CLIENT = benchclient.load_client()
BACKENDS = CLIENT.backends

# what `vllm bench serve --save-result` writes (the keys we read, values from a lab run)
CLIENT_RESULT = {
    "duration": 3.88,
    "completed": 32,
    "failed": 0,
    "output_throughput": 528.0,
    "total_token_throughput": 1811.1,
    **{
        f"{stat}_{lat}_ms": value
        for lat, base in (("ttft", 20.0), ("tpot", 3.0), ("itl", 2.0), ("e2el", 230.0))
        for stat, value in (
            ("mean", base * 1.2),
            ("median", base),
            ("p50", base),
            ("p99", base * 5),
        )
    },
}


def metrics(out_tok_s: float, tpot_p99: float, failed: int = 0) -> Metrics:
    m = from_client_result(CLIENT_RESULT)
    figures = {**m.figures, "output_tok_s": out_tok_s, "tpot_ms.p99": tpot_p99, "failed": failed}
    return Metrics(figures, m.completed, m.duration_s)


def test_lambda_guide_workload_is_read_from_its_command(catalog) -> None:
    (point,) = guide_points(catalog.recipe("lambda-b200-vllm").benchmark, BACKENDS)
    p = point.params
    assert (p.input_len, p.output_len, p.num_prompts, p.concurrency) == (8192, 1024, 512, 32)
    assert p.backend == "openai-chat" and math.isinf(p.request_rate) and p.range_ratio == 0
    assert point.published.get("output_tok_s") == 1268
    assert point.published.get("tpot_ms.p99") == 21 and point.published.get("ttft_ms.mean") == 5024


def test_sglang_guide_has_both_published_points_in_the_clients_terms(catalog) -> None:
    """SGLang draws lengths on [r*len, len] (r=0 by default); the same lengths in vLLM's
    terms are centre len/2, half-width ratio 1."""
    low, high = guide_points(catalog.recipe("sglang-h200-bf16-nextn").benchmark, BACKENDS)
    assert low.params.concurrency == 1 and high.params.concurrency == 100
    assert (low.params.input_len, low.params.output_len, low.params.range_ratio) == (500, 500, 1.0)
    assert low.params.backend == ""  # SGLang's native API: the client's default backend
    assert low.published.get("tpot_ms.mean") == 3.96 and low.published.get("tpot_ms.p50") == 3.79
    assert high.published.get("output_tok_s") == 1767.45
    fixed = params_from_command(
        "python -m sglang.bench_serving --random-input-len 16384 --random-output-len 1024 "
        "--random-range-ratio 1 --num-prompts 40 --max-concurrency 40",
        BACKENDS,
    )
    assert (fixed.input_len, fixed.output_len, fixed.range_ratio) == (16384, 1024, 0.0)


def test_other_guide_shapes_rate_paced_and_shared_prefix(catalog) -> None:
    (paced,) = guide_points(catalog.recipe("vllm-h200-bf16-text").benchmark, BACKENDS)
    assert paced.params.concurrency is None and paced.params.request_rate == 20
    assert paced.published.figures == {}  # the guide printed no figures
    (gsp,) = guide_points(
        catalog.recipe("ascend-a3-w4a8-in128k-out1k-prefix90-50ms").benchmark, BACKENDS
    )
    assert gsp.params.input_len == 117964 + 13107 and "shared-prefix" in gsp.params.note
    assert gsp.published.get("tpot_ms.mean") == 50  # the TPOT target stands for the mean
    assert guide_points(catalog.recipe("sglang-b200-bf16-nextn").benchmark, BACKENDS) == []


def test_overrides_and_a_recipe_without_a_guide_benchmark(catalog) -> None:
    points = guide_points(catalog.recipe("lambda-b200-vllm").benchmark, BACKENDS)
    p = choose_params("h1", "r", points, {"num_prompts": 64, "input_len": None}, "openai")
    assert (p.num_prompts, p.input_len, p.concurrency) == (64, 8192, 32)
    assert matching_point(points, p) is None and matching_point(points, points[0].params)
    with pytest.raises(LlmfleetError) as exc:
        choose_params("b1", "sglang-b200-bf16-nextn", [], {"input_len": 128}, "openai")
    assert str(exc.value).startswith("b1: recipe sglang-b200-bf16-nextn has no benchmark")
    assert "--output-len N --num-prompts N --concurrency N" in str(exc.value)
    whole = {"input_len": 8, "output_len": 4, "num_prompts": 2, "concurrency": 1}
    assert choose_params("b1", "x", [], whole, "openai") == BenchParams(
        8, 4, 2, 1, backend="openai"
    )


def test_client_argv_carries_the_workload_and_never_the_key(tmp_path: Path) -> None:
    p = BenchParams(128, 64, 32, 4, backend="openai-chat")
    target = benchclient.Target("h1", "http://10.0.0.5:8000", "tiny", "/tok", api_key="sekret")
    argv = benchclient.run_argv(CLIENT, p, target, tmp_path / "r.json")
    pairs = dict(zip(argv[::2], argv[1::2], strict=False))
    assert pairs["--endpoint"] == "/v1/chat/completions" and pairs["--model"] == "tiny"
    assert pairs["--random-input-len"] == "128" and pairs["--max-concurrency"] == "4"
    assert pairs["--request-rate"] == "inf" and pairs["--base-url"] == "http://10.0.0.5:8000"
    assert "ttft,tpot,itl,e2el" in argv and "50,99" in argv and "sekret" not in " ".join(argv)
    unbounded = benchclient.run_argv(CLIENT, BenchParams(1, 1, 1, None), target, tmp_path / "r")
    assert "--max-concurrency" not in unbounded and "/v1/completions" in unbounded


def test_client_result_and_guide_figures_share_one_shape() -> None:
    m = from_client_result(CLIENT_RESULT)
    assert {f.key for f in FIGURES} <= set(m.figures)  # every figure the issue asks for
    assert m.get("tpot_ms.p50") == 3.0 and m.get("e2el_ms.p99") == 1150.0
    assert Metrics.from_json(m.to_json()) == m
    g = from_guide_results({"ttft_ms": {"mean": 190.4, "median": 208.46, "p99": 261.27}})
    assert g.get("ttft_ms.p50") == 208.46 and g.to_json()["ttft_ms"]["p99"] == 261.27


def test_gate_verdict_watches_throughput_tail_tpot_and_failures() -> None:
    old = metrics(500, 10)
    assert gate_verdict(metrics(480, 10.5), old, 10) == []  # within 10%
    slow = gate_verdict(metrics(200, 10), old, 10)
    assert slow == ["output tok/s 200.00 vs 500.00 (60.0% worse > 10%)"]
    assert "TPOT p99 13.00 vs 10.00 (30.0% worse" in gate_verdict(metrics(500, 13), old, 10)[0]
    assert gate_verdict(metrics(500, 10, failed=2), old, 10) == ["failed requests 2 vs 0"]
    assert gate_verdict(metrics(900, 5), old, 0) == []  # better is never a failure
    # sub-millisecond TPOTs (a server coalescing its stream) are below what the gate judges
    assert gate_verdict(metrics(500, 0.9), metrics(500, 0.01), 10) == []
    assert "TPOT p99 2.10" in gate_verdict(metrics(500, 2.1), metrics(500, 0.01), 10)[0]


def run_of(host: str, release: str, out_tok_s: float, t: float, conc: int = 4) -> BenchRun:
    return BenchRun(
        host,
        release,
        "lab-cpu-vllm-tiny",
        "1 x cpu",
        BenchParams(128, 64, 32, conc),
        metrics(out_tok_s, 10),
        {"digest": "d1"},
        "http://x:8000",
        time=t,
    )


def test_results_are_kept_per_host_and_release(tmp_path: Path) -> None:
    p = BenchParams(128, 64, 32, 4)
    path = benchstore.save(tmp_path, run_of("lab1", "aaa", 100, 1))
    benchstore.save(tmp_path, run_of("lab1", "aaa", 110, 2))
    benchstore.save(tmp_path, run_of("lab1", "bbb", 200, 3))
    benchstore.save(tmp_path, run_of("lab1", "ccc", 300, 4, conc=8))  # another workload
    assert path == tmp_path / "lab1" / "aaa.json"
    assert [
        r.metrics.get("output_tok_s") for r in benchstore.load_runs(tmp_path, "lab1", "aaa")
    ] == [
        100,
        110,
    ]
    assert benchstore.latest(tmp_path, "lab1", "aaa", p, "d1").metrics.get("output_tok_s") == 110
    assert benchstore.latest(tmp_path, "lab1", "aaa", p, "other-client") is None
    # the release the host marks previous wins; else the newest other comparable one
    assert benchstore.previous(tmp_path, "lab1", "ddd", p, "d1", prefer="aaa").release == "aaa"
    assert benchstore.previous(tmp_path, "lab1", "ddd", p, "d1").release == "bbb"
    assert benchstore.previous(tmp_path, "lab2", "ddd", p, "d1") is None
    # the gate judges against the best run of a release: a later, slower one does not lower it
    benchstore.save(tmp_path, run_of("lab1", "aaa", 90, 5))
    assert benchstore.best(tmp_path, "lab1", "aaa", p, "d1").metrics.get("output_tok_s") == 110


def test_rows_set_each_figure_beside_guide_and_previous(catalog) -> None:
    (guide,) = guide_points(catalog.recipe("lambda-b200-vllm").benchmark, BACKENDS)
    by_key = {
        r.figure.key: r for r in rows(run_of("h", "b", 634, 2), guide, run_of("h", "a", 1268, 1))
    }
    out = by_key["output_tok_s"]
    assert (out.ours, out.guide, out.vs_guide, out.previous) == (634, 1268, 0.5, 1268)
    assert out.worse_pct == 50
    assert by_key["itl_ms.p50"].guide is None and by_key["itl_ms.p50"].vs_guide is None
    hb = HostBench("h", "b", "lab-cpu-vllm-tiny", "1 x cpu", runs=[run_of("h", "b", 634, 2)])
    hb.previous, hb.stored, hb.guide = [None], [Path("/r/h/b.json")], guide
    doc = host_json(hb)
    assert doc["runs"][0]["vs_guide"]["output_tok_s"] == 0.5 and doc["ok"]
    assert doc["runs"][0]["metrics"]["tpot_ms"]["p99"] == 10 and doc["runs"][0]["previous"] is None


def test_sweep_plot_is_a_png_per_host_and_release(tmp_path: Path, catalog) -> None:
    from llmfleet.benchplot import plot_sweep

    hb = HostBench("lab1", "b", "lab-cpu-vllm-tiny", "1 x cpu")
    hb.guide_recipe, hb.guide_hardware = "lambda-b200-vllm", "8 x B200"
    hb.runs = [run_of("lab1", "b", 100 * c, c, conc=c) for c in (1, 4, 16)]
    hb.guide_points = guide_points(catalog.recipe("lambda-b200-vllm").benchmark, BACKENDS)
    out = plot_sweep(
        hb, [run_of("lab1", "a", 90 * c, c, conc=c) for c in (1, 4)], tmp_path / "p.png"
    )
    data = out.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 20_000


def test_sweep_values() -> None:
    assert bench.sweep_values("1,4,16,64") == (1, 4, 16, 64)
    for bad in ("0,4", "a", ","):
        with pytest.raises(LlmfleetError, match="--sweep"):
            bench.sweep_values(bad)


class FakeFleet:
    """bench.read_states and bench.bench_fleet without SSH or a client: releases and
    throughput per host as the test sets them."""

    def __init__(self, monkeypatch, tmp_path: Path) -> None:
        self.release = {"h1": "old", "h2": "old"}
        self.speed = {"old": 500.0, "new": 500.0}
        self.benched: list[tuple[str, str]] = []
        self.req = Request(results=tmp_path)
        monkeypatch.setattr(bench, "read_states", self.read_states)
        monkeypatch.setattr(bench, "bench_fleet", self.bench_fleet)
        monkeypatch.setattr(bench, "plan_host", self.plan_host)

    def read_states(self, hosts):
        from llmfleet.manifest import ReleaseState

        return [HostState(n, d, ReleaseState(current=self.release[n])) for n, d in hosts]

    def plan_host(self, cat, client, hs, req):
        return HostBench(hs.name), [BenchParams(128, 64, 32, 4)], None

    def bench_fleet(self, cat, hosts, req, say=print, states=None):
        out = []
        for hs in states:
            rel = self.release[hs.name]
            self.benched.append((hs.name, rel))
            run = run_of(hs.name, rel, self.speed[rel], len(self.benched))
            run = BenchRun(**{**run.__dict__, "client": {"digest": CLIENT.digest}})
            benchstore.save(req.results, run)
            out.append(HostBench(hs.name, rel, runs=[run]))
        return out


def test_gate_reverts_a_slower_batch_and_the_rollout_stops(monkeypatch, tmp_path, catalog) -> None:
    fleet = FakeFleet(monkeypatch, tmp_path)
    fleet.speed["new"] = 200.0  # like --max-num-seqs 1 against 4
    reverted: list[tuple[list[str], str]] = []

    def revert(hosts: list[str], release: str) -> dict[str, dict]:
        reverted.append((hosts, release))
        for h in hosts:
            fleet.release[h] = release
        return {h: {"status": "healthy"} for h in hosts}

    def deploy(batch: list[str]) -> dict[str, dict]:
        for h in batch:
            fleet.release[h] = "new"
        return {h: {"status": "healthy", "detail": "serving"} for h in batch}

    hosts = [("h1", {}), ("h2", {})]
    gate = BenchGate(catalog, hosts, 10, revert, req=fleet.req, say=lambda m: None)
    out = roll(["h1", "h2"], "1", "0", deploy, say=lambda m: None, hook=gate)
    assert fleet.benched == [("h1", "old"), ("h1", "new")]  # baseline first, then the batch
    assert reverted == [(["h1"], "old")] and fleet.release["h1"] == "old"
    assert out.stopped and out.skipped == ["h2"]
    assert out.failed["h1"].startswith("failed: bench gate vs release old: output tok/s 200.00")
    assert out.failed["h1"].endswith("; reverted to old")


def test_gate_passes_an_unchanged_speed_and_reuses_stored_figures(
    monkeypatch, tmp_path, catalog
) -> None:
    fleet = FakeFleet(monkeypatch, tmp_path)
    fleet.speed["new"] = 490.0  # 2% slower: within a 10% gate
    benchstore.save(
        tmp_path,
        BenchRun(**{**run_of("h1", "old", 500, 0).__dict__, "client": {"digest": CLIENT.digest}}),
    )

    def deploy(batch: list[str]) -> dict[str, dict]:
        for h in batch:
            fleet.release[h] = "new"
        return {h: {"status": "healthy"} for h in batch}

    gate = BenchGate(catalog, [("h1", {}), ("h2", {})], 10, lambda h, r: {}, req=fleet.req)
    out = roll(["h1", "h2"], "2", "0", deploy, say=lambda m: None, hook=gate)
    assert not out.failed and out.done == ["h1", "h2"]
    # h1's old release was measured before (stored): only h2's is measured now
    assert fleet.benched == [("h2", "old"), ("h1", "new"), ("h2", "new")]


def test_bench_refuses_a_loopback_endpoint_naming_host_and_fix(catalog) -> None:
    from llmfleet.manifest import ReleaseManifest

    m = ReleaseManifest(
        "r1", "x", "venv", None, [], "m/x", "main", "c" * 40, 6688, "q", ["--host", "127.0.0.1"]
    )
    with pytest.raises(LlmfleetError, match=r"^a3: bind: the server listens on 127.0.0.1"):
        bench.endpoint_url("a3", {"ssh_hostname": "10.0.0.9"}, m, {"host_flag": "--host"})
    m2 = ReleaseManifest("r1", "x", "venv", None, [], "m/x", "main", "c" * 40, 8000, "q", [])
    assert bench.endpoint_url("a3", {"ssh_hostname": "10.0.0.9"}, m2, {}) == "http://10.0.0.9:8000"


def test_client_source_is_the_fleets_when_hosts_agree() -> None:
    wh = {"engine_find_links": "http://wh/wheels"}
    assert bench.fleet_source([("a", wh), ("b", wh)]).find_links == "http://wh/wheels"
    assert (
        bench.fleet_source([("a", wh), ("b", {"engine_find_links": "x"})]) == benchclient.Source()
    )
