"""Multi-node serving groups, planned: hosts sharing a serve_group are one server.

Inventories here carry a group and no hand-typed node_rank or master_addr; the
plan is built the way the deploy builds it (``plan_host`` per host, then
``check_fleet``), and every rank's command is compared with the guide's.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml
from conftest import cli
from seeds import commands, normalise

from llmfleet.args import unparse
from llmfleet.catalog import Catalog, CatalogError
from llmfleet.manifest import ReleaseManifest
from llmfleet.multinode import network_env
from llmfleet.plan import plan_inventory, plan_json, serve_plan
from llmfleet.settings import Settings
from llmfleet.validate import HostPlan, check_fleet, plan_host

REPO = Path(__file__).resolve().parent.parent
COMMIT = "0123456789abcdef0123456789abcdef01234567"
SEED = {c.key: c for c in commands()}
GB200 = {"hardware": "gb200", "recipe": "vllm-gb200-bf16-2node", "serve_group": "gb-a"}
H100 = {"hardware": "h100", "recipe": "sglang-h100-bf16-tp16-2node", "serve_group": "h100-a"}


def _fleet(catalog: Catalog, group: dict, hosts: list[tuple[str, dict]]) -> list[HostPlan]:
    """Plan an inventory as the deploy's roles do: each host, then the fleet checks."""
    plans = [
        plan_host(catalog, name, {**group, **data}, str(data.get("ssh_hostname", name)))
        for name, data in hosts
    ]
    check_fleet(plans, catalog)
    return plans


def _pair(prefix: str = "n", **extra) -> list[tuple[str, dict]]:
    """Two hosts, 10.0.0.1 and 10.0.0.2, in that inventory order."""
    return [(f"{prefix}{i}", {"ssh_hostname": f"10.0.0.{i + 1}", **extra}) for i in range(2)]


def _errors(plan: HostPlan) -> list:
    return [p for p in plan.problems if p.severity == "error"]


def _flag(argv: list[str], name: str) -> str:
    return argv[argv.index(name) + 1]


# --- every rank renders as the guides write it


def test_gb200_two_nodes_render_the_guide_commands_rank_by_rank(catalog) -> None:
    plans = _fleet(catalog, GB200, _pair("gb"))
    assert all(p.ok for p in plans), [p.problems for p in plans]
    for plan, key in zip(plans, ("003:87", "003:99"), strict=True):
        seed, r = SEED[key], plan.rendered
        assert normalise(r.argv, 2) == normalise(seed.tokens, 2)
        assert _flag(r.argv, "--master-addr") == "10.0.0.1"  # the guide's <head_node_ip>
        # the guide sets no environment; the node's own address is all the group adds
        assert r.env == {**seed.env, "VLLM_HOST_IP": plan.address}
    head, worker = plans
    assert (head.rendered.role, worker.rendered.role) == ("head", "worker")
    assert "--headless" not in head.rendered.argv and worker.rendered.argv[-1] == "--headless"
    group = head.group
    assert group is worker.group and group.name == "gb-a" and group.master_addr == "10.0.0.1"
    assert [(m.host, m.rank, m.role) for m in group.members] == [
        ("gb0", 0, "head"),
        ("gb1", 1, "worker"),
    ]
    assert [(r.flag, r.address, r.port) for r in group.rendezvous] == [
        ("--master-port", "10.0.0.1", 29501)
    ]


def test_h100_tp16_two_nodes_render_the_guide_command_on_both_ranks(catalog) -> None:
    """The guide gives H100 in prose ("tp=16 (2 nodes)"): the H200 command with --tp 16
    and SGLang's multi-node flags, --dist-init-addr at rank 0's address."""
    plans = _fleet(catalog, H100, _pair("h"))
    assert all(p.ok for p in plans), [p.problems for p in plans]
    h200 = dict(normalise(SEED["002:46"].tokens, 3)[1])
    for rank, plan in enumerate(plans):
        r = plan.rendered
        expected = h200 | {
            "--tp": ("16",),
            "--nnodes": ("2",),
            "--node-rank": (str(rank),),
            "--dist-init-addr": ("*",),
        }
        launcher, flags = normalise(r.argv, 3)
        assert launcher == ["python", "-m", "sglang.launch_server"]
        assert dict(flags) == expected
        assert _flag(r.argv, "--dist-init-addr") == "10.0.0.1:20000"
        assert r.env == {}  # SGLang has no host-IP variable; no NIC was named
    assert [m.role for m in plans[0].group.members] == ["head", "worker"]
    assert plans[1].group.rendezvous[0].port == 20000


def test_the_deploy_path_without_a_catalog_argument(catalog) -> None:
    """roles/plan.py calls check_fleet(plans): the process's catalog is used."""
    plans = [plan_host(catalog, h, {**GB200, **d}, d["ssh_hostname"]) for h, d in _pair()]
    check_fleet(plans)
    assert [p.rendered.rank for p in plans] == [0, 1] and plans[1].group.name == "gb-a"


def test_node_rank_set_on_one_host_the_others_follow_inventory_order(catalog) -> None:
    hosts = [
        ("a", {"ssh_hostname": "10.0.0.1"}),
        ("b", {"ssh_hostname": "10.0.0.2", "node_rank": 0}),
    ]
    plans = _fleet(catalog, GB200, hosts)
    assert [p.rendered.rank for p in plans] == [1, 0]
    assert plans[0].group.master_addr == "10.0.0.2" == plans[0].group.head.address
    assert _flag(plans[0].rendered.argv, "--master-addr") == "10.0.0.2"


def test_a_separate_group_network_and_its_interface(catalog) -> None:
    """SSH on one network, NCCL/Gloo on another: group_address and network_interface."""
    hosts = [
        ("gb0", {"ssh_hostname": "gb0.mgmt.example", "group_address": "192.168.50.1"}),
        ("gb1", {"ssh_hostname": "gb1.mgmt.example", "group_address": "192.168.50.2"}),
    ]
    plans = _fleet(catalog, {**GB200, "network_interface": "ib0"}, hosts)
    assert all(p.ok for p in plans)
    assert _flag(plans[1].rendered.argv, "--master-addr") == "192.168.50.1"
    assert plans[1].rendered.env == {
        "GLOO_SOCKET_IFNAME": "ib0",
        "VLLM_HOST_IP": "192.168.50.2",
        "NCCL_SOCKET_IFNAME": "ib0",
    }


def test_a_host_name_is_no_host_ip_so_the_plan_warns(catalog) -> None:
    hosts = [("gb0", {"ssh_hostname": "gb0.example"}), ("gb1", {"ssh_hostname": "gb1.example"})]
    plans = _fleet(catalog, GB200, hosts)
    assert all(p.ok for p in plans)
    assert _flag(plans[1].rendered.argv, "--master-addr") == "gb0.example"
    assert "VLLM_HOST_IP" not in plans[1].rendered.env
    (warning,) = [p for p in plans[1].problems if p.severity == "warning"]
    assert warning.field == "group_address" and "'gb1.example' is not an IP" in warning.message
    assert "group_address" in warning.fix


def test_ascend_nodes_get_the_hccl_variables(catalog) -> None:
    dep = Settings(network_interface="enp1s0", group_address="10.1.0.7")
    env, left_out = network_env(catalog.engines["sglang"], catalog.hw("atlas-800i-a3"), dep)
    assert env == {
        "GLOO_SOCKET_IFNAME": "enp1s0",
        "HCCL_SOCKET_IFNAME": "enp1s0",
        "HCCL_IF_IP": "10.1.0.7",
        "TP_SOCKET_IFNAME": "enp1s0",
    }
    assert left_out == {}
    env, left_out = network_env(catalog.engines["sglang"], catalog.hw("atlas-800i-a3"), Settings())
    assert env == {} and left_out["HCCL_IF_IP"] == ["node_ip"]


# --- a group that does not fit is an error naming the group, the hosts and a fix


def _misfit(plans: list[HostPlan], field: str) -> list:
    """The group error on every member (a group starts all or none)."""
    found = []
    for p in plans:
        errors = [e for e in _errors(p) if e.field == field]
        assert errors, (p.host, p.problems)
        assert errors[0].fix
        found.append(errors[0])
    return found


def test_a_missing_member(catalog) -> None:
    (err,) = _misfit(_fleet(catalog, GB200, [("gb0", {"ssh_hostname": "10.0.0.1"})]), "serve_group")
    assert "serve group gb-a has 1 host (gb0)" in err.message and "1 missing" in err.message
    assert "serve_group=gb-a" in err.fix


def test_one_member_too_many(catalog) -> None:
    hosts = [(f"gb{i}", {"ssh_hostname": f"10.0.0.{i}"}) for i in range(3)]
    errors = _misfit(_fleet(catalog, GB200, hosts), "serve_group")
    assert "has 3 hosts (gb0, gb1, gb2)" in errors[2].message and "2 nodes" in errors[2].message
    assert "move 1 of them out of serve_group gb-a" in errors[0].fix


def test_mixed_hardware(catalog) -> None:
    hosts = [("gb0", {"ssh_hostname": "10.0.0.1"}), ("b0", {"hardware": "b200"})]
    errors = _misfit(_fleet(catalog, GB200, hosts), "hardware")
    assert "serve group gb-a mixes hardware: gb0=gb200, b0=b200" in errors[0].message
    assert "gb0, b0" in errors[1].fix


def test_a_rank_twice(catalog) -> None:
    errors = _misfit(_fleet(catalog, GB200, _pair(node_rank=1)), "node_rank")
    assert "serve group gb-a: rank 1 is set on both n0 and n1" in errors[0].message


def test_a_rank_outside_the_group(catalog) -> None:
    n0, n1 = _fleet(catalog, GB200, [("n0", {}), ("n1", {"node_rank": 2})])
    (own,) = [e for e in _errors(n1) if e.field == "node_rank"]
    assert own.message == "2 is outside 0..1" and "serve_group" in own.fix
    (err,) = _misfit([n0, n1], "serve_group")[:1]
    assert "serve group gb-a: n1 cannot be planned" in err.message and "n1" in err.fix


def test_a_member_that_does_not_plan_stops_the_group(catalog) -> None:
    hosts = [("n0", {}), ("n1", {"prot": 8001})]
    plans = _fleet(catalog, GB200, hosts)
    err = next(e for e in _errors(plans[0]) if e.field == "serve_group")
    assert "n1 cannot be planned" in err.message and "all of its members or none" in err.message
    assert plans[0].group is None


def test_mixed_master_addr(catalog) -> None:
    hosts = [("n0", {"master_addr": "10.0.0.1"}), ("n1", {})]
    (err, _) = _misfit(_fleet(catalog, GB200, hosts), "master_addr")
    assert "mixes master_addr: n0=10.0.0.1, n1=None" in err.message


def test_a_one_node_recipe_in_a_group(catalog) -> None:
    group = {"hardware": "h200", "recipe": "vllm-h200-bf16-text", "serve_group": "g"}
    (err, _) = _misfit(_fleet(catalog, group, _pair()), "serve_group")
    assert "recipe vllm-h200-bf16-text runs on one node" in err.message


def test_a_multinode_host_without_group_or_master_says_serve_group(catalog) -> None:
    plan = plan_host(catalog, "gb0", {"hardware": "gb200", "recipe": "vllm-gb200-bf16-2node"})
    (err,) = _errors(plan)
    assert err.field == "master_addr" and "serve_group" in err.fix


# --- vLLM's data-parallel multi-node form: a recipe chooses it


DP_RECIPE = {
    "id": "site-h200-fp8-dp16-2node",
    "extends": "vllm-h200-fp8-text-dp-ep",
    "title": "H200 FP8, DP16 + expert parallel over 2 nodes (vLLM's multi-node DP form)",
    "source": {"seed": "site", "section": "docs/multinode.md"},
    "nodes": 2,
    "multinode_form": "data-parallel",
    "arg_overrides": {"-dp": "16"},
}


def _catalog_with(tmp_path: Path, recipe: dict) -> Catalog:
    root = tmp_path / recipe["id"] / "files"
    shutil.copytree(Catalog().root, root)
    (root / "recipes" / f"{recipe['id']}.yaml").write_text(yaml.safe_dump(recipe))
    return Catalog(root)


def test_data_parallel_over_two_nodes_renders_vllms_head_and_headless_worker(tmp_path) -> None:
    catalog = _catalog_with(tmp_path, DP_RECIPE)
    group = {"hardware": "h200", "recipe": DP_RECIPE["id"], "serve_group": "dp"}
    head, worker = _fleet(catalog, group, _pair())
    assert head.ok and worker.ok, (head.problems, worker.problems)
    assert head.rendered.parallel.per_node == 8
    # the recipe's flags (-dp 16: the total), then vLLM's docs' head and worker lines
    own = unparse(catalog.recipe(DP_RECIPE["id"]).flags())
    assert own[:2] == ["-dp", "16"]
    head_line = [
        "--data-parallel-size-local",
        "8",
        "--data-parallel-address",
        "10.0.0.1",
        "--data-parallel-rpc-port",
        "13345",
    ]
    assert head.rendered.argv[9:] == [*own, *head_line]
    worker_line = [*head_line, "--data-parallel-start-rank", "8", "--headless"]
    assert worker.rendered.argv[9:] == [*own, *worker_line]
    assert "--nnodes" not in worker.rendered.argv
    assert head.group.form == "data-parallel" and head.group.rendezvous[0].port == 13345
    assert head.group.rendezvous[0].flag == "--data-parallel-rpc-port"


def test_data_parallel_rendezvous_port_from_dist_port(tmp_path) -> None:
    catalog = _catalog_with(tmp_path, DP_RECIPE)
    group = {"hardware": "h200", "recipe": DP_RECIPE["id"], "serve_group": "dp", "dist_port": 14000}
    _, worker = _fleet(catalog, group, _pair())
    assert _flag(worker.rendered.argv, "--data-parallel-rpc-port") == "14000"
    assert worker.group.rendezvous[0].port == 14000


def test_a_data_parallel_size_that_does_not_split_over_the_nodes(tmp_path) -> None:
    catalog = _catalog_with(tmp_path, {**DP_RECIPE, "arg_overrides": {"-dp": "15"}})
    group = {"hardware": "h200", "recipe": DP_RECIPE["id"], "serve_group": "dp"}
    head, _ = _fleet(catalog, group, _pair())
    err = next(e for e in _errors(head) if e.field == "parallelism")
    assert "data-parallel size 15 does not split over 2 nodes" in err.message


def test_the_data_parallel_form_needs_an_engine_that_has_it(tmp_path) -> None:
    recipe = {
        "id": "site-h100-sglang-dp",
        "extends": "sglang-h100-bf16-tp16-2node",
        "title": "x",
        "source": {"seed": "site", "section": "x"},
        "multinode_form": "data-parallel",
    }
    with pytest.raises(CatalogError, match="engine sglang has no data-parallel multi-node form"):
        _catalog_with(tmp_path, recipe)
    with pytest.raises(CatalogError, match="multinode_form 'ring' is not one of"):
        _catalog_with(tmp_path, {**recipe, "id": "site-ring", "multinode_form": "ring"})


def test_sglang_and_vllm_master_ports_from_dist_port(catalog) -> None:
    _, h1 = _fleet(catalog, {**H100, "dist_port": 21000}, _pair())
    assert _flag(h1.rendered.argv, "--dist-init-addr") == "10.0.0.1:21000"
    _, gb1 = _fleet(catalog, {**GB200, "dist_port": 30001}, _pair())
    assert _flag(gb1.rendered.argv, "--master-port") == "30001"
    assert gb1.group.rendezvous[0].port == 30001


# --- the serve plan and the release manifest carry the role


def test_serve_plans_and_manifests_of_a_group(catalog) -> None:
    plans = _fleet(catalog, {**GB200, "network_interface": "eth1"}, _pair())
    head, worker = (serve_plan(catalog, p, COMMIT) for p in plans)
    assert (head.role, worker.role) == ("head", "worker")
    assert head.group is worker.group is plans[0].group
    assert "--headless" in worker.unit and "--headless" not in head.unit
    assert "--master-addr 10.0.0.1" in worker.unit
    assert "VLLM_HOST_IP=10.0.0.2" in worker.env and "NCCL_SOCKET_IFNAME=eth1" in worker.env
    assert head.release != worker.release
    data = json.loads(worker.manifest.text())
    assert data["node"] == {
        "group": "gb-a",
        "form": "nnodes",
        "nodes": 2,
        "rank": 1,
        "role": "worker",
        "master_addr": "10.0.0.1",
        "rendezvous": [{"flag": "--master-port", "address": "10.0.0.1", "port": 29501}],
    }
    back = ReleaseManifest.from_json(data)
    assert back == worker.manifest and back.role == "worker"


def test_a_one_node_manifest_keeps_its_shape(catalog) -> None:
    plan = plan_host(catalog, "h", {"hardware": "h200", "recipe": "vllm-h200-bf16-text"})
    s = serve_plan(catalog, plan, COMMIT)
    data = json.loads(s.manifest.text())
    assert "node" not in data and s.role == "head" and s.group is None
    assert ReleaseManifest.from_json(data).role == "head"


# --- llmfleet plan shows the groups


def test_plan_json_has_the_group_and_each_hosts_role(catalog) -> None:
    hosts = [(n, d["ssh_hostname"], {**GB200, **d}) for n, d in _pair("gb")]
    rows = plan_json(plan_inventory(catalog, hosts))
    assert [r["node"]["role"] for r in rows] == ["head", "worker"]
    assert rows[0]["group"] == rows[1]["group"]
    assert rows[0]["group"]["members"] == [
        {"host": "gb0", "rank": 0, "role": "head", "address": "10.0.0.1"},
        {"host": "gb1", "rank": 1, "role": "worker", "address": "10.0.0.2"},
    ]


def test_the_example_inventory_plans_one_group() -> None:
    env = {"LLMFLEET_GB200_PAIR": "10.0.0.1 10.0.0.2", "LLMFLEET_GB200_NIC": "enp3s0"}
    rc, out, err = cli("plan", "inventories/multinode_example.py", "--json", cwd=REPO, env=env)
    assert rc == 0, err
    rows = {r["host"]: r for r in json.loads(out)}
    assert rows["gb200-1"]["argv"][-7:] == [
        "--nnodes",
        "2",
        "--node-rank",
        "1",
        "--master-addr",
        "10.0.0.1",
        "--headless",
    ]
    assert rows["gb200-0"]["group"]["name"] == "gb200-pair"
    rc, out, err = cli("plan", "inventories/multinode_example.py", cwd=REPO, env=env)
    assert rc == 0 and "serve group gb200-pair" in out and "connects to 10.0.0.1:29501" in out


def test_the_example_inventory_says_what_to_set() -> None:
    rc, _, err = cli(
        "plan", "inventories/multinode_example.py", cwd=REPO, env={"LLMFLEET_GB200_PAIR": ""}
    )
    assert rc == 2 and "set LLMFLEET_GB200_PAIR" in err and "Traceback" not in err
