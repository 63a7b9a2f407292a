"""The monitor deploy on pyinfra's @fake connector: who gets what, and a bad host
failing alone before anything is touched on it."""

from __future__ import annotations

from pathlib import Path

from fakehosts import outcome, run_deploy

LAB = {"hardware": "cpu", "recipe": "lab-cpu-vllm-tiny"}
# the bounded wait of roles/ready.py: the daemon answers at once
ANSWERS = {"u.urlopen(sys.argv[1]": {"success": True}}


def test_prometheus_on_the_monitoring_host_node_exporter_everywhere(tmp_path: Path) -> None:
    hosts = {
        "m1": (ANSWERS, {**LAB, "monitor_host": "@fake/m1"}),
        "w1": (ANSWERS, {**LAB}),
        # SGLang without --enable-metrics: no /metrics to scrape
        "s1": ({}, {"hardware": "b200", "recipe": "lambda-b200-sglang"}),
    }
    result = run_deploy(tmp_path, "deploys/monitor.py", hosts, commands=True)
    ops = {host: outcome(result, f"@fake/{host}") for host in hosts}
    assert ops["m1"]["Prometheus and Alertmanager | Scrape targets (4)"] == "changed"
    assert ops["m1"]["Prometheus and Alertmanager | Prometheus answers"] == "changed"
    assert "Node exporter | Node exporter answers" in ops["w1"]
    assert not any(name.startswith("Prometheus and Alertmanager") for name in ops["w1"])
    # s1 fails alone, naming the setting and the fix, and nothing ran on it
    failed = [name for name, state in ops["s1"].items() if state == "error"]
    assert len(failed) == 1 and "monitoring" in failed[0] and "--enable-metrics" in failed[0]
    assert not any(name.startswith("Node exporter") for name in ops["s1"])
    sent = " ".join(result["commands"]["@fake/s1"])
    assert "apt-get" not in sent
    assert result["outcomes"]["@fake/w1"]["status"] == "ok"
    assert result["outcomes"]["@fake/s1"]["status"] == "failed"
