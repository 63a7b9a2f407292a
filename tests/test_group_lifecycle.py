"""A serving group's lifecycle decisions (llmfleet/grouplife.py), the health script's
worker judgement and the watchdog's view of the group's connections."""

from __future__ import annotations

import importlib.util
import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from llmfleet.grouplife import (
    ENV_RENDEZVOUS,
    ENV_ROLE,
    ENV_WORKERS,
    Judge,
    batch_units,
    group_env,
    left_out_error,
    missing_members,
    verdict,
)
from llmfleet.multinode import NodeRole, Rendezvous
from llmfleet.rollout import batches, roll
from llmfleet.servegroup import GroupMember, ServeGroup

SCRIPTS = Path(__file__).resolve().parents[1] / "files" / "scripts"
RDV = (Rendezvous("--data-parallel-rpc-port", "10.0.0.1", 13345),)
GROUP = ServeGroup(
    "pair",
    "r",
    "gb200",
    "data-parallel",
    2,
    "10.0.0.1",
    RDV,
    (GroupMember("n0", 0, "10.0.0.1"), GroupMember("n1", 1, "10.0.0.2")),
)


def _node(rank: int) -> NodeRole:
    return NodeRole("pair", "data-parallel", 2, rank, "10.0.0.1", RDV)


def _script(name: str):
    spec = importlib.util.spec_from_file_location(name.replace("-", "_"), SCRIPTS / name)
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_group_env_names_role_rank0_and_for_the_head_its_workers() -> None:
    head, worker = group_env(_node(0), GROUP), group_env(_node(1), GROUP)
    assert head[ENV_ROLE] == "head" and head[ENV_WORKERS] == "10.0.0.2"
    assert worker[ENV_ROLE] == "worker" and ENV_WORKERS not in worker
    assert head[ENV_RENDEZVOUS] == worker[ENV_RENDEZVOUS] == "10.0.0.1:13345"
    assert group_env(None, None) == {}  # a one-node server's env file stays as it was


def test_judge_by_role() -> None:
    assert Judge.of(None).is_head and Judge.of(_node(0)).connect == ()
    assert Judge.of(_node(1)) == Judge("worker", ("10.0.0.1",))


def test_a_run_must_target_the_whole_group() -> None:
    members = [m.host for m in GROUP.members]
    assert missing_members(members, ["n0", "n1", "x"]) == []
    assert missing_members(members, ["n0"]) == ["n1"]
    assert left_out_error("n0", "pair", members, ["n0", "n1"]) == ""
    error = left_out_error("n0", "pair", members, ["n0"])
    assert "this run leaves out n1" in error and "--limit n0 --limit n1" in error


def test_verdict_counts_a_missing_result_as_failed() -> None:
    assert verdict({"n0": {"ok": True}, "n1": {"ok": True}}) == []
    assert verdict({"n0": {"ok": True}, "n1": None}) == ["n1"]
    assert verdict({"n0": {"ok": False}, "n1": {"ok": True}}) == ["n0"]


def test_rollout_batches_count_groups() -> None:
    hosts = ["a", "g1", "b", "g2", "c"]
    units = batch_units(hosts, {"g1": "G", "g2": "G"})
    assert units == [["a"], ["g1", "g2"], ["b"], ["c"]]
    assert batches(hosts, "2", units) == [["a", "g1", "g2"], ["b", "c"]]
    assert batches(hosts, "50%", units) == [["a", "g1", "g2"], ["b", "c"]]


def test_rollout_stops_on_failed_groups_not_hosts() -> None:
    hosts = ["g1", "g2", "a", "b"]
    units = batch_units(hosts, {"g1": "G", "g2": "G"})
    seen: list[list[str]] = []

    def run(batch: list[str]) -> dict:
        seen.append(batch)
        return {h: {"status": "failed" if h.startswith("g") else "healthy"} for h in batch}

    said: list[str] = []
    out = roll(hosts, "1", "0", run, say=said.append, units=units)
    assert said[-1] == "stopping: 1 failed host(s) or group(s) > allowed 0; not touched: a, b"
    # both members failed: one failed group > 0 allowed, so a and b are not touched
    assert seen == [["g1", "g2"]] and out.stopped and out.skipped == ["a", "b"]
    seen.clear()
    out = roll(hosts, "1", "1", run, say=lambda m: None, units=units)
    assert seen == [["g1", "g2"], ["a"], ["b"]] and not out.stopped


@pytest.fixture
def listener():
    srv = socket.create_server(("127.0.0.1", 0))
    yield srv
    srv.close()


def test_health_script_sees_the_peers_of_established_connections(listener) -> None:
    health = _script("llmfleet-health.py")
    port = listener.getsockname()[1]
    assert health.resolve([f"127.0.0.1:{port}", "localhost"]) >= {"127.0.0.1"}
    rows = {(r[0], r[1]) for r in health._established_rows()}
    client = socket.create_connection(("127.0.0.1", port))
    conn, _ = listener.accept()
    try:
        # no unit here: every connection of the host counts (the docker case)
        assert "127.0.0.1" in health.peers("no-such-unit-here")
        new = {(r[0], r[1]) for r in health._established_rows()} - rows
        local = client.getsockname()
        assert ((local[0], local[1]), ("127.0.0.1", port)) in new  # the worker's side
        assert (("127.0.0.1", port), (local[0], local[1])) in new  # rank 0's side
    finally:
        client.close()
        conn.close()


def test_worker_gate_fails_when_rank0_is_not_there(tmp_path: Path) -> None:
    """No connection to rank 0 within the timeout: the worker's gate says so, as JSON."""
    free = socket.create_server(("127.0.0.1", 0))
    port = free.getsockname()[1]
    free.close()
    proc = subprocess.run(
        [
            sys.executable,
            str(SCRIPTS / "llmfleet-health.py"),
            "--port",
            "8000",
            "--model",
            "m",
            "--unit",
            "no-such-unit-here",
            "--timeout",
            "2",
            "--connect",
            f"127.0.0.1:{port}",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    verdict_ = json.loads(proc.stdout.strip().splitlines()[-1])
    assert proc.returncode == 1 and not verdict_["ok"]
    assert verdict_["stage"] in ("connect", "process")


def test_watchdog_reads_the_group_from_the_env_file(tmp_path: Path, listener) -> None:
    watch, health = _script("llmfleet-group-watch.py"), _script("llmfleet-health.py")
    port = listener.getsockname()[1]
    env = tmp_path / "serve.env"
    env.write_text(
        "# Managed by llmfleet\nLLMFLEET_GROUP=pair\nLLMFLEET_GROUP_ROLE=worker\n"
        "LLMFLEET_GROUP_RENDEZVOUS='127.0.0.1:13345'\n"
    )
    unit = "no-such-unit-here"
    wanted, _ = watch.connections(health, watch.read_env(str(env)), unit)
    assert wanted == {"127.0.0.1"}
    client = socket.create_connection(("127.0.0.1", port))
    conn, _ = listener.accept()
    try:
        assert watch.connections(health, watch.read_env(str(env)), unit)[1] == wanted
        head = "LLMFLEET_GROUP_ROLE=head\nLLMFLEET_GROUP_RENDEZVOUS=127.0.0.1:13345\n"
        env.write_text(head + "LLMFLEET_GROUP_WORKERS=127.0.0.1,127.0.0.9\n")
        wanted, present = watch.connections(health, watch.read_env(str(env)), unit)
        assert wanted == {"127.0.0.1", "127.0.0.9"} and present == {"127.0.0.1"}  # .9 gone
    finally:
        client.close()
        conn.close()
    env.write_text("VLLM_CPU_KVCACHE_SPACE=1\n")  # a one-node server: nothing to watch
    assert watch.connections(health, watch.read_env(str(env)), unit) == (set(), set())


def test_the_lab_pair_renders_head_and_headless_worker_with_their_launchers(catalog) -> None:
    """lab-cpu-vllm-tiny-dp2: rank 0 keeps the lab's api_server entry point, rank 1 runs
    vLLM's CLI (`serve ... --headless`), both with the data-parallel flags."""
    from dataclasses import replace

    from llmfleet.render import render
    from llmfleet.settings import Settings

    recipe = catalog.recipe("lab-cpu-vllm-tiny-dp2")
    base = Settings(master_addr="10.213.0.11", network_interface="host0")
    head = render(catalog, recipe, replace(base, group_address="10.213.0.11"), "lab1", rank=0)
    worker = render(catalog, recipe, replace(base, group_address="10.213.0.12"), "lab2", rank=1)
    assert head.argv[:3] == ["python", "-m", "vllm.entrypoints.openai.api_server"]
    assert worker.argv[:2] == ["python", "-c"] and worker.argv[3] == "serve"
    common = "--data-parallel-size 2 --data-parallel-size-local 1 "
    common += "--data-parallel-address 10.213.0.11 --data-parallel-rpc-port 13345"
    assert common in " ".join(head.argv) and common in " ".join(worker.argv)
    assert worker.argv[-3:] == ["--data-parallel-start-rank", "1", "--headless"]
    assert "--headless" not in head.argv
    assert (head.env["VLLM_HOST_IP"], worker.env["VLLM_HOST_IP"]) == ("10.213.0.11", "10.213.0.12")
    assert head.env["GLOO_SOCKET_IFNAME"] == worker.env["GLOO_SOCKET_IFNAME"] == "host0"


def test_status_groups_every_rank_and_is_healthy_only_when_all_are() -> None:
    from llmfleet.oncall import group_rows

    head = {"host": "n0", "reachable": True, "health": "serving", "group": "pair", "rank": 0}
    worker = {"host": "n1", "reachable": True, "group": "pair", "rank": 1}
    rows = [
        {**worker, "group_role": "worker", "health": "connected to rank 0", "role": "server"},
        {**head, "group_role": "head", "role": "server"},
        {"host": "solo", "reachable": True, "health": "serving", "group": None},
    ]
    (group,) = group_rows(rows)
    assert group["healthy"]
    assert [(r["rank"], r["host"], r["role"]) for r in group["ranks"]] == [
        (0, "n0", "head"),
        (1, "n1", "worker"),
    ]
    rows[0]["health"] = "NOT connected to rank 0"  # the head still serves: not enough
    assert not group_rows(rows)[0]["healthy"]
