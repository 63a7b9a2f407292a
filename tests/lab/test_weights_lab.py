"""The weights role on lab hosts: pinned pulls that resume, verify and repair.

A second lab repo of eight 16 MB random shards is served by the lab's Hub;
the link to lab1 is slowed with ``tc`` so a pull can be interrupted mid-way
for real (the fetch process is killed on the host, as a crash would).
Everything is asserted on the hosts over SSH.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from llmfleet.lab import hosts, lab, shards
from llmfleet.lab.shards import hub_bytes_sent

pytestmark = pytest.mark.lab

ROOT = Path(__file__).resolve().parents[2]
SHARDS = shards.REPO
N_SHARDS, SHARD_MB = 8, 16
BLOBS = "/var/lib/llmfleet/hf/hub/models--llmfleet-lab--shards/blobs"


def weights(*args: str, deploy: str = "deploys/weights.py") -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
    return subprocess.run(
        [sys.executable, "-m", "pyinfra", "-y", "inventories/lab.py", deploy, *args],
        cwd=ROOT,
        env={**env, "COLUMNS": "200"},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,  # pyinfra logs on stderr, our summary on stdout
        text=True,
        timeout=900,
    )


def changed(proc: subprocess.CompletedProcess) -> int:
    m = re.search(r"Grand total\s+\S+\s+(\S+)", proc.stdout)
    assert m, proc.stdout[-3000:]
    return 0 if m.group(1) == "-" else int(m.group(1))


def ssh(host: dict[str, Any], command: str) -> str:
    proc = subprocess.run(
        hosts.ssh_argv(host, command), capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, f"{host['name']}: `{command}`: {proc.stderr}"
    return proc.stdout.strip()


def blob_stats(host: dict[str, Any]) -> dict[str, str]:
    """{blob name: "inode mtime_ns size"} of complete blobs (no .incomplete)."""
    out = ssh(host, f"cd {BLOBS} 2>/dev/null && stat -c '%n %i %.9Y %s' * 2>/dev/null || true")
    rows = (line.split(" ", 1) for line in out.splitlines() if line)
    return {name: rest for name, rest in rows if not name.endswith(".incomplete")}


@pytest.fixture(scope="module")
def lab_state() -> Iterator[dict[str, Any]]:
    assert os.geteuid() == 0, "the lab tests need root (deselect them with -m 'not lab')"
    try:
        lab.down()  # start from clean hosts, whatever was left running
        state = lab.up(hosts=2)
        shards.build(N_SHARDS, SHARD_MB)
        yield state
    finally:
        lab.down()


@pytest.fixture
def slow_link_to(lab_state: dict[str, Any]) -> Iterator[None]:
    """lab1's downloads at 80 Mbit/s (10 MB/s), so a pull of 128 MB takes ~13 s."""
    dev = "llmfl-lab1"
    subprocess.run(
        [
            "tc",
            "qdisc",
            "add",
            "dev",
            dev,
            "root",
            "tbf",
            "rate",
            "80mbit",
            "burst",
            "64kb",
            "latency",
            "500ms",
        ],
        check=True,
    )
    try:
        yield
    finally:
        subprocess.run(["tc", "qdisc", "del", "dev", dev, "root"], check=False)


@pytest.fixture
def slow_links(lab_state: dict[str, Any]) -> Iterator[None]:
    """Every lab host's downloads at 80 Mbit/s (10 MB/s): a swarm of 134 MB takes ~15 s."""
    devs = [f"llmfl-{h['name']}" for h in lab_state["hosts"]]
    for dev in devs:
        subprocess.run(
            ["tc", "qdisc", "add", "dev", dev, "root", "tbf", "rate", "80mbit"]
            + ["burst", "64kb", "latency", "500ms"],
            check=True,
        )
    try:
        yield
    finally:
        for dev in devs:
            subprocess.run(["tc", "qdisc", "del", "dev", dev, "root"], check=False)


def test_pull_then_a_second_run_changes_nothing(lab_state: dict[str, Any]) -> None:
    first = weights()
    assert first.returncode == 0, first.stdout[-3000:]
    assert re.search(r"│ lab1\s+│.*│ pulled 1\.5 MB in", first.stdout), first.stdout
    for host in lab_state["hosts"]:
        marker = json.loads(ssh(host, "cat /var/lib/llmfleet/hf/llmfleet/*tiny-qwen2@*.complete"))
        assert marker["revision"] == lab_state["services"]["model_commit"]
        assert marker["files"]["model.safetensors"]["size"] == 1481880
    again = weights("--data", "weights_verify=true")
    assert again.returncode == 0 and changed(again) == 0, again.stdout[-3000:]
    assert "cached (verified)" in again.stdout


def test_interrupted_pull_resumes_and_refetches_nothing_complete(
    lab_state: dict[str, Any], slow_link_to: None
) -> None:
    lab1 = lab_state["hosts"][0]
    args = ["--limit", "lab1", "--data", f"model_repo={SHARDS}", "--data", "weights_workers=1"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "pyinfra", "-y", "inventories/lab.py", "deploys/weights.py", *args],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    deadline = time.monotonic() + 300
    while len(blob_stats(lab1)) < 3:  # a few shards complete, one in flight
        assert time.monotonic() < deadline and proc.poll() is None, "pull ended too soon"
        time.sleep(0.3)
    ssh(lab1, "pkill -9 -f '^/opt/llmfleet/tools/hub/bin/python '")  # the pull dies
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode != 0
    assert f"lab1: weights: pull of {SHARDS}@" in out and "failed" in out, out[-3000:]
    done_before = blob_stats(lab1)
    assert 3 <= len(done_before) < N_SHARDS + 1
    assert "progress" in out or "ETA" in out  # live progress was printed while it ran

    resumed = weights(*args)
    assert resumed.returncode == 0, resumed.stdout[-3000:]
    after = blob_stats(lab1)
    assert len(after) == N_SHARDS + 1  # shards + config.json
    for name, stat in done_before.items():
        assert after[name] == stat, f"{name} was fetched again"
    assert not ssh(lab1, f"ls {BLOBS} | grep incomplete || true")
    check = weights(*args, "--data", "weights_verify=true")
    assert check.returncode == 0 and changed(check) == 0, check.stdout[-3000:]


def test_corrupt_or_truncated_shard_is_detected_and_refetched(lab_state: dict[str, Any]) -> None:
    lab2 = lab_state["hosts"][1]
    args = ["--limit", "lab2", "--data", f"model_repo={SHARDS}"]
    assert weights(*args).returncode == 0
    snap = "/var/lib/llmfleet/hf/hub/models--llmfleet-lab--shards/snapshots/*"
    shard = f"$(readlink -f {snap}/model-00002-of-00008.safetensors)"
    # same-size corruption: only checksums see it
    ssh(lab2, f"printf XXXX | dd of={shard} bs=1 seek=4096 conv=notrunc 2>/dev/null")
    quiet = weights(*args)
    assert changed(quiet) == 0  # sizes only: not detected without verification
    fixed = weights(*args, "--data", "weights_verify=true")
    assert fixed.returncode == 0, fixed.stdout[-3000:]
    assert "needs repair" in fixed.stdout and "sha256" not in fixed.stdout  # git blob id check
    assert "re-fetched model-00002-of-00008.safetensors" in fixed.stdout
    # truncation: the size check of every run catches it
    ssh(lab2, f"truncate -s 1000 {shard}")
    again = weights(*args)
    assert again.returncode == 0 and "re-fetched model-00002-of-00008.safetensors" in again.stdout
    verify = weights(*args, "--data", "weights_verify=true")
    assert changed(verify) == 0, verify.stdout[-3000:]


def test_dead_mirror_is_a_clear_error(lab_state: dict[str, Any]) -> None:
    hub_url = lab_state["services"]["hub_url"]
    dead = "http://10.213.0.1:9"
    # the control node resolves through the live Hub; the host is sent to a dead mirror
    proc = weights(
        "--limit",
        "lab2",
        "--data",
        "hf_home=/var/lib/llmfleet/hf-dead",
        "--data",
        f"hf_control_endpoint={hub_url}",
        "--data",
        f"hf_endpoint={dead}",
    )
    assert proc.returncode != 0
    assert "lab2: weights: pull of llmfleet-lab/tiny-qwen2@" in proc.stdout
    assert "cannot list llmfleet-lab/tiny-qwen2@" in proc.stdout and dead in proc.stdout
    assert re.search(r"│ lab2\s+│.*│ failed", proc.stdout), proc.stdout[-3000:]
    # and when the control node cannot reach it either, nothing is touched
    proc = weights("--limit", "lab2", "--data", f"hf_endpoint={dead}")
    assert proc.returncode != 0
    assert f"lab2: cannot reach {dead} to resolve llmfleet-lab/tiny-qwen2@main" in proc.stdout
    assert "Error: executed 0 commands" in proc.stdout


def deploy_mirror(lab_state: dict[str, Any]) -> subprocess.CompletedProcess:
    upstream = lab_state["services"]["hub_upstream_url"]
    return weights(
        "--limit", "lab1", "--data", f"mirror_upstream={upstream}", deploy="deploys/mirror.py"
    )


def test_site_mirror_fetches_each_file_from_the_hub_once(lab_state: dict[str, Any]) -> None:
    hub_url = lab_state["services"]["hub_url"]
    mirror = deploy_mirror(lab_state)
    assert mirror.returncode == 0, mirror.stdout[-3000:]
    lab1 = lab_state["hosts"][0]
    assert ssh(lab1, "systemctl is-active llmfleet-mirror") == "active"
    assert (
        ssh(lab1, "ps -o user= -p $(systemctl show -p MainPID --value llmfleet-mirror)")
        == "llmfleet-mirror"
    )
    before = hub_bytes_sent()
    pulled = weights(
        "--data",
        f"model_repo={SHARDS}",
        "--data",
        "hf_home=/var/lib/llmfleet/hf-m",
        "--data",
        f"hf_control_endpoint={hub_url}",
        "--data",
        f"hf_endpoint=http://{lab1['address']}:8090",
    )
    sent = hub_bytes_sent() - before
    assert pulled.returncode == 0, pulled.stdout[-3000:]
    size = N_SHARDS * (SHARD_MB << 20)
    print(f"Hub bytes for 2 hosts through the mirror: {sent} ({sent / size:.2f} copies)")
    assert size <= sent < 1.2 * size  # one copy (plus HTTP and SSH overhead), not two
    again = deploy_mirror(lab_state)
    assert changed(again) == 0, again.stdout[-3000:]


def test_fan_out_from_a_peer_costs_the_hub_one_copy(lab_state: dict[str, Any]) -> None:
    args = [
        "--data",
        f"model_repo={SHARDS}",
        "--data",
        "hf_home=/var/lib/llmfleet/hf-peer",
        "--data",
        "weights_peer=lab1",
    ]
    # the hosts' tools (uv, the hub venv) come from the same bridge: have them first,
    # so the count below is the weights alone
    assert weights().returncode == 0
    before = hub_bytes_sent()
    fanned = weights(*args)
    sent = hub_bytes_sent() - before
    assert fanned.returncode == 0, fanned.stdout[-3000:]
    size = N_SHARDS * (SHARD_MB << 20)
    print(f"Hub bytes for 2 hosts with peer fan-out: {sent} ({sent / size:.2f} copies)")
    assert size <= sent < 1.2 * size
    lab2 = lab_state["hosts"][1]
    marker = json.loads(ssh(lab2, "cat /var/lib/llmfleet/hf-peer/llmfleet/*shards@*.complete"))
    assert marker["from_peer"] == "http://10.213.0.11:8099" and marker["transfer"] == "direct"
    assert "Fan out weights (peer serves, others copy)" in fanned.stdout
    assert "Stop serving peers" in fanned.stdout
    assert not ssh(lab_state["hosts"][0], "ss -Htln 'sport = :8099'")  # nothing left running
    again = weights(*args)
    assert again.returncode == 0 and changed(again) == 0, again.stdout[-3000:]


SWARM_HOME = "/var/lib/llmfleet/hf-swarm"
SWARM = [
    "--data",
    f"model_repo={SHARDS}",
    "--data",
    f"hf_home={SWARM_HOME}",
    "--data",
    "weights_swarm=true",
    "--data",
    "weights_piece_mb=4",
]


def swarm_marker(host: dict[str, Any]) -> dict[str, Any]:
    return json.loads(ssh(host, f"cat {SWARM_HOME}/llmfleet/*shards@*.complete"))


def test_swarm_costs_the_hub_one_copy_and_a_rerun_moves_nothing(
    lab_state: dict[str, Any],
) -> None:
    assert weights().returncode == 0  # the tools first, so the count is the weights alone
    before = hub_bytes_sent()
    swarm = weights(*SWARM)
    sent = hub_bytes_sent() - before
    assert swarm.returncode == 0, swarm.stdout[-3000:]
    size = N_SHARDS * (SHARD_MB << 20)
    print(f"Hub bytes for 2 hosts with the swarm: {sent} ({sent / size:.2f} copies)")
    assert size <= sent < 1.2 * size
    assert "swarm of 2 host(s), 4 MiB pieces, first sources lab1, lab2" in swarm.stdout
    for host, other in zip(lab_state["hosts"], reversed(lab_state["hosts"]), strict=True):
        marker = swarm_marker(host)
        assert marker["transfer"] == "swarm" and marker["verified"] is True
        assert marker["swarm"]["peer_bytes"][other["name"]] > 0  # each served the other
        assert not ssh(host, "ss -Htln 'sport = :8099'")  # nothing left serving
        assert not ssh(host, f"ls {SWARM_HOME}/hub/*/blobs | grep llmfleet || true")
    before = hub_bytes_sent()
    again = weights(*SWARM)
    assert again.returncode == 0 and changed(again) == 0, again.stdout[-3000:]
    assert hub_bytes_sent() - before < 2_000_000  # SSH only


def test_swarm_detects_a_corrupt_piece_from_a_peer_and_fetches_it_again(
    lab_state: dict[str, Any],
) -> None:
    lab1, lab2 = lab_state["hosts"]
    snap = f"{SWARM_HOME}/hub/models--llmfleet-lab--shards/snapshots/*"
    shard = "model-00003-of-00008.safetensors"
    # lab1 keeps a same-size corruption in piece 1 (sizes look fine: it stays a seed)
    blob = f"$(readlink -f {snap}/{shard})"
    ssh(lab1, f"printf XXXX | dd of={blob} bs=1 seek={5 << 20} conv=notrunc 2>/dev/null")
    ssh(lab2, f"rm -rf {SWARM_HOME}")
    before = hub_bytes_sent()
    healed = weights(*SWARM)
    sent = hub_bytes_sent() - before
    assert healed.returncode == 0, healed.stdout[-3000:]
    assert "everything from lab1 (no Hub bytes)" in healed.stdout
    marker = swarm_marker(lab2)
    assert marker["swarm"]["corrupt"] == [{"file": shard, "piece": 1, "peer": "lab1"}]
    assert marker["refetched"] == [shard]
    assert f"piece 1 of {shard} from lab1 failed its checksum" in ssh(
        lab2, f"cat {SWARM_HOME}/llmfleet/run/pull.log"
    )
    # the one piece from the Hub (olah ignores Range: the bytes before it too), the rest
    # from lab1
    assert sent < (8 << 20) + 3_000_000
    check = weights(*SWARM, "--data", "weights_verify=true", "--limit", "lab2")
    assert check.returncode == 0 and changed(check) == 0, check.stdout[-3000:]


def test_a_host_killed_mid_swarm_does_not_stop_the_other(
    lab_state: dict[str, Any], slow_links: None
) -> None:
    lab1, lab2 = lab_state["hosts"]
    for host in (lab1, lab2):
        ssh(host, f"rm -rf {SWARM_HOME}")
    proc = subprocess.Popen(
        [sys.executable, "-m", "pyinfra", "-y", "inventories/lab.py", "deploys/weights.py"] + SWARM,
        cwd=ROOT,
        env={k: v for k, v in os.environ.items() if not k.startswith("HF_")},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    blobs = f"{SWARM_HOME}/hub/models--llmfleet-lab--shards/blobs"
    deadline = time.monotonic() + 300
    pieces = f"cat {blobs}/*.pieces 2>/dev/null | grep -vc '^piece' || true"
    while int(ssh(lab2, pieces) or 0) < 3:  # a few pieces in, many to go
        assert time.monotonic() < deadline and proc.poll() is None, "the swarm ended too soon"
        time.sleep(0.3)
    ssh(lab2, "pkill -9 -f '^/opt/llmfleet/tools/hub/bin/python /opt/llmfleet/bin/llmfleet-swarm'")
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode != 0  # lab2 failed ...
    assert re.search(r"│ lab2\s+│.*│ failed", out), out[-3000:]
    assert re.search(r"│ lab1\s+│.*│ pulled 134\.2 MB in", out), out[-3000:]  # ... lab1 did not
    marker = swarm_marker(lab1)
    assert marker["verified"] and marker["swarm"]["took_over"]  # lab2's files, from the Hub
    resumed = weights(*SWARM)  # lab2 resumes, from lab1
    assert resumed.returncode == 0, resumed.stdout[-3000:]
    assert swarm_marker(lab2)["resumed"]
