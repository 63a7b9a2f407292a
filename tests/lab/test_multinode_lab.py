"""One vLLM server over two lab hosts: a serving group end to end.

``pyinfra inventories/lab_multinode.py deploys/serve.py``: lab1 and lab2 are the
serving group ``lab-pair`` running ``lab-cpu-vllm-tiny-dp2``, vLLM's multi-node
data parallel on CPU (each host one DP rank, Gloo over the lab bridge), rank 0 (lab1)
serving the API, lab2 headless.  Checked on the hosts: ranks, environment and ports as
planned, a completion through rank 0, a quiet re-run, a flag change restarting both
ranks once each, a killed worker engine noticed and the group back, and a broken
release reverting both members.  About 10 minutes on 2 cores.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest

from .labkit import ROOT, Run, fresh_lab, run_pyinfra, ssh_run

pytestmark = pytest.mark.lab

INVENTORY = "inventories/lab_multinode.py"
UNIT = "llmfleet-serve.service"
RPC_PORT = 13345  # vLLM's --data-parallel-rpc-port default, rank 0's rendezvous port


def deploy(*args: str) -> Run:
    start = time.monotonic()
    proc = run_pyinfra("deploys/serve.py", *args, inventory=INVENTORY)
    return Run(proc, time.monotonic() - start)


def prop(host: dict[str, Any], name: str) -> str:
    return ssh_run(host, f"systemctl show -p {name} --value {UNIT}")


def env_file(host: dict[str, Any]) -> dict[str, str]:
    text = ssh_run(host, "cat /etc/llmfleet/serve.env")
    pairs = (ln.split("=", 1) for ln in text.splitlines() if "=" in ln and ln[0] != "#")
    return {k: v.strip("'\"") for k, v in pairs}


def starts_since(host: dict[str, Any], since: float) -> int:
    """How many times systemd started the engine unit since ``since`` (epoch seconds)."""
    out = ssh_run(
        host, f"journalctl -u {UNIT} --since @{int(since)} -o cat --no-pager | grep -c '^Started'"
    )
    return int(out or 0)


def chat(host: dict[str, Any], timeout: float = 60) -> dict[str, Any]:
    body = json.dumps(
        {"model": "tiny", "max_tokens": 4, "messages": [{"role": "user", "content": "Hi"}]}
    )
    out = subprocess.run(
        [
            "curl",
            "-sf",
            "-m",
            str(timeout),
            "-H",
            "Content-Type: application/json",
            "-d",
            body,
            f"http://{host['address']}:8000/v1/chat/completions",
        ],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, f"no completion from {host['name']}: {out.stderr}"
    return json.loads(out.stdout)


def status() -> dict[str, Any]:
    proc = subprocess.run(
        [sys.executable, "-m", "llmfleet", "status", INVENTORY, "--json"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    return json.loads(proc.stdout)


@pytest.fixture(scope="module")
def lab_state() -> Iterator[dict[str, Any]]:
    with fresh_lab(2) as state:
        yield state


@pytest.fixture(scope="module")
def head(lab_state: dict[str, Any]) -> dict[str, Any]:
    return lab_state["hosts"][0]


@pytest.fixture(scope="module")
def worker(lab_state: dict[str, Any]) -> dict[str, Any]:
    return lab_state["hosts"][1]


@pytest.fixture(scope="module")
def first(lab_state: dict[str, Any]) -> Run:
    run = deploy()
    print(f"first multi-node deploy (2 lab hosts, DP 2): {run.seconds:.0f}s")
    assert run.rc == 0, run
    return run


def test_the_group_answers_a_completion_through_rank_0(
    first: Run, head: dict[str, Any], worker: dict[str, Any]
) -> None:
    assert re.search(r"lab1\s+│ lab-cpu-vllm-tiny-dp2 .*│ healthy", first.out), first
    assert re.search(r"lab2\s+│ lab-cpu-vllm-tiny-dp2 .*│ healthy .*worker, connected", first.out)
    reply = chat(head)
    assert reply["model"] == "tiny" and reply["usage"]["completion_tokens"] == 4
    # the headless worker serves no API
    assert "8000" not in ssh_run(worker, "ss -Hltn")


def test_ranks_environment_and_ports_are_as_planned(
    first: Run, head: dict[str, Any], worker: dict[str, Any]
) -> None:
    plan = json.loads(
        subprocess.run(
            [sys.executable, "-m", "llmfleet", "plan", INVENTORY, "--json"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        ).stdout
    )
    planned = {h["host"]: h for h in plan}
    master = head["address"]
    for host, rank in ((head, 0), (worker, 1)):
        node = planned[host["name"]]["node"]
        assert (node["rank"], node["master_addr"]) == (rank, master)
        env = env_file(host)
        nic = ssh_run(host, f"ip -o addr show to {host['address']}").split()[1].split("@")[0]
        assert env["VLLM_HOST_IP"] == host["address"] and env["GLOO_SOCKET_IFNAME"] == nic
        assert env["LLMFLEET_GROUP_RANK"] == str(rank)
        assert env["LLMFLEET_GROUP_RENDEZVOUS"] == f"{master}:{RPC_PORT}"
        args = ssh_run(host, f"ps -o args= -p {prop(host, 'MainPID')}")
        assert f"--data-parallel-address {master} --data-parallel-rpc-port {RPC_PORT}" in args
        assert ("--headless" in args) == (rank == 1)
        assert ("--data-parallel-start-rank 1" in args) == (rank == 1)
    # the ranks met on the rendezvous port, then talk over ports the engine picks
    linked = ssh_run(worker, f"ss -Htnp state established dst {master}")
    assert "VLLM::EngineCor" in linked, "the worker's engine holds no connection to rank 0"


def test_status_shows_the_group_with_every_rank(first: Run) -> None:
    out = status()
    (group,) = out["groups"]
    assert group["group"] == "lab-pair" and group["healthy"], group
    assert [(r["rank"], r["host"], r["role"]) for r in group["ranks"]] == [
        (0, "lab1", "head"),
        (1, "lab2", "worker"),
    ]


def test_a_rerun_changes_nothing(first: Run, head: dict[str, Any], worker: dict[str, Any]) -> None:
    pids = [prop(h, "MainPID") for h in (head, worker)]
    again = deploy()
    assert again.rc == 0 and again.changed == 0, again
    assert [prop(h, "MainPID") for h in (head, worker)] == pids


def test_a_run_that_leaves_out_a_member_touches_nothing(first: Run, worker: dict[str, Any]) -> None:
    pid = prop(worker, "MainPID")
    run = deploy("--limit", "lab2", "--data", "flag.--max-num-seqs=3")
    assert run.rc != 0 and "this run leaves out lab1" in run.out, run
    assert "--limit lab1 --limit lab2" in run.out  # the fix
    assert prop(worker, "MainPID") == pid


def test_a_flag_change_restarts_both_ranks_once_each(
    first: Run, head: dict[str, Any], worker: dict[str, Any]
) -> None:
    since = time.time() - 1
    run = deploy("--data", "flag.--max-num-seqs=2")
    assert run.rc == 0, run
    for host in (head, worker):
        assert "--max-num-seqs 2" in ssh_run(host, f"ps -o args= -p {prop(host, 'MainPID')}")
        assert starts_since(host, since) == 1, host["name"]
    assert chat(head)["usage"]["completion_tokens"] == 4


def test_killing_the_worker_engine_is_noticed_and_the_group_recovers(
    first: Run, head: dict[str, Any], worker: dict[str, Any]
) -> None:
    since = time.time() - 1
    started = time.monotonic()
    ssh_run(worker, f"kill -9 {prop(worker, 'MainPID')}")
    deadline = started + 300
    healthy_at = None
    while time.monotonic() < deadline:
        time.sleep(3)
        try:
            group = status()["groups"][0]
        except (ValueError, KeyError, IndexError):
            continue
        if group["healthy"] and starts_since(head, since) >= 1:
            try:
                chat(head, timeout=30)
            except AssertionError:
                continue
            healthy_at = time.monotonic() - started
            break
    assert healthy_at is not None, "the group did not come back within 300 s"
    print(
        f"worker engine killed: group serving again after {healthy_at:.0f}s "
        f"(head restarts {starts_since(head, since)}, worker {starts_since(worker, since)})"
    )
    # rank 0 restarted too (a head alone cannot take the worker back), and it was the
    # group watchdog that did it: vLLM's head does not notice a lost remote engine
    assert starts_since(head, since) >= 1 and starts_since(worker, since) >= 1
    watch = ssh_run(head, "journalctl -u llmfleet-group-watch -o cat --no-pager")
    print(watch.splitlines()[-3:])
    assert f"group broken: {worker['address']} gone" in watch


def test_a_broken_release_reverts_both_members(
    first: Run, head: dict[str, Any], worker: dict[str, Any]
) -> None:
    link = "readlink /var/lib/llmfleet/releases/current"
    current = {h["name"]: ssh_run(h, link) for h in (head, worker)}
    # a context longer than the model's: every rank's engine refuses it at start-up
    run = deploy("--data", "flag.--max-model-len=999999", "--data", "health_timeout=240")
    assert run.rc != 0, run
    assert "every member went back to its previous release" in run.out, run
    for host in (head, worker):
        assert ssh_run(host, link) == current[host["name"]]
        assert "--max-model-len 999999" not in ssh_run(
            host, f"ps -o args= -p {prop(host, 'MainPID')}"
        )
    assert chat(head)["usage"]["completion_tokens"] == 4
    assert status()["groups"][0]["healthy"]
