"""The router's plan: its worker list from the inventory, its flags, its key, its release."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from llmfleet.catalog import Catalog
from llmfleet.errors import LlmfleetError
from llmfleet.router import (
    KEY_ENV,
    check_keys,
    fleet_plans,
    load_spec,
    member_urls,
    router_plan,
    router_workers,
)

REPO = Path(__file__).resolve().parent.parent
LAB = {"hardware": "cpu", "recipe": "lab-cpu-vllm-tiny"}
GB200 = {"hardware": "gb200", "recipe": "vllm-gb200-bf16-2node", "serve_group": "gb-a"}


def _inventory() -> list[tuple[str, dict]]:
    """Two one-node servers, a two-node GB200 group, and a router host."""
    return [
        ("s1", {"ssh_hostname": "10.0.0.1", **LAB}),
        ("s2", {"ssh_hostname": "10.0.0.2", **LAB, "port": 8001}),
        ("g1", {"ssh_hostname": "10.0.1.1", **GB200}),
        ("g2", {"ssh_hostname": "10.0.1.2", **GB200}),
        ("r1", {"ssh_hostname": "10.0.9.1", "router": True}),
    ]


def test_the_workers_are_the_serving_hosts_and_a_group_contributes_its_rank_0_only(
    catalog: Catalog,
) -> None:
    plans = fleet_plans(_inventory(), catalog)
    assert all(p.ok for p in plans), [str(x) for p in plans for x in p.problems]
    workers, left = router_workers(plans)
    assert [(w.host, w.url, w.group) for w in workers] == [
        ("s1", "http://10.0.0.1:8000", None),
        ("s2", "http://10.0.0.2:8001", None),
        ("g1", "http://10.0.1.1:8000", "gb-a"),
    ]
    assert left == []
    # restarting any member of the group takes the group's rank 0 out of the router
    assert member_urls(plans)["g2"] == member_urls(plans)["g1"] == "http://10.0.1.1:8000"
    assert "r1" not in member_urls(plans)


def test_rank_0_is_whichever_host_the_group_puts_first(catalog: Catalog) -> None:
    hosts = _inventory()
    hosts[2][1]["node_rank"], hosts[3][1]["node_rank"] = 1, 0
    workers, _ = router_workers(fleet_plans(hosts, catalog))
    assert [w.host for w in workers if w.group] == ["g2"]


def test_a_server_whose_plan_fails_is_left_out_with_a_warning(catalog: Catalog) -> None:
    hosts = _inventory()
    hosts[1][1]["recipe"] = "no-such-recipe"
    workers, left = router_workers(fleet_plans(hosts, catalog))
    assert [w.host for w in workers] == ["s1", "g1"]
    assert [(p.host, p.severity) for p in left] == [("s2", "warning")]


def test_a_router_only_host_needs_no_recipe(catalog: Catalog) -> None:
    plans = {p.host: p for p in fleet_plans(_inventory(), catalog)}
    assert plans["r1"].ok and plans["r1"].rendered is None


def _plan(catalog: Catalog, key: str | None = None, **settings):
    plans = fleet_plans(_inventory(), catalog)
    router = next(p for p in plans if p.host == "r1")
    from dataclasses import replace

    s = replace(router.settings, **settings)
    return router_plan("r1", s, router_workers(plans)[0], key)


def test_cache_aware_by_default_health_checks_and_retries_on(catalog: Catalog) -> None:
    plan = _plan(catalog)
    argv = list(plan.argv)
    assert argv[argv.index("--policy") + 1] == "cache_aware"
    assert argv[argv.index("--health-check-interval-secs") + 1] == "5"
    assert argv[argv.index("--health-failure-threshold") + 1] == "2"
    assert int(argv[argv.index("--retry-max-retries") + 1]) > 0
    assert argv[argv.index("--prometheus-port") + 1] == "29000"
    assert argv[argv.index("--worker-urls") + 1 :] == [
        "http://10.0.0.1:8000",
        "http://10.0.0.2:8001",
        "http://10.0.1.1:8000",
    ]
    assert f"ExecStart={' '.join(argv)}" in plan.unit
    assert plan.manifest["package"] == load_spec().package == "smg==1.13.0"
    # its own venv, named by the pin: a new pin builds beside the old one
    assert re.fullmatch(r"/opt/llmfleet/tools/smg-[0-9a-f]{10}", plan.spec.venv)
    assert argv[0] == f"{plan.spec.venv}/bin/python"


def test_the_policy_is_configurable_and_a_wrong_one_names_host_key_and_fix(
    catalog: Catalog,
) -> None:
    assert "--policy round_robin" in " ".join(_plan(catalog, router_policy="round_robin").argv)
    with pytest.raises(
        LlmfleetError, match=r"r1: router_policy: 'fastest'.*fix: one of cache_aware"
    ):
        _plan(catalog, router_policy="fastest")


def test_the_key_is_in_the_env_file_never_in_argv_or_the_unit(catalog: Catalog) -> None:
    plan = _plan(catalog, key="sekrit-123")
    assert f"{KEY_ENV}=sekrit-123" in plan.env
    assert "sekrit-123" not in plan.unit and "sekrit-123" not in " ".join(plan.argv)
    assert "--api-key" not in plan.argv
    # the launcher reads the variable the plan writes
    launcher = (REPO / "files/scripts/llmfleet-router.py").read_text()
    assert f'KEY_ENV = "{KEY_ENV}"' in launcher


def test_the_release_id_follows_what_runs(catalog: Catalog) -> None:
    base = _plan(catalog)
    assert base.release == _plan(catalog).release
    assert base.release != _plan(catalog, router_policy="round_robin").release
    assert base.release != _plan(catalog, key="k").release


def test_no_servers_and_clashing_ports_are_errors(catalog: Catalog) -> None:
    plans = fleet_plans([("r1", {"ssh_hostname": "10.0.9.1", "router": True})], catalog)
    with pytest.raises(LlmfleetError, match="r1: router: no serving host"):
        router_plan("r1", plans[0].settings, router_workers(plans)[0], None)
    with pytest.raises(LlmfleetError, match="r1: router_metrics_port: 30000"):
        _plan(catalog, router_metrics_port=30000)


def test_servers_must_share_the_routers_key_or_have_none() -> None:
    assert check_keys("r1", "k", {"s1": None, "s2": "k"}) == []
    bad = check_keys("r1", "k", {"s1": "other"})
    assert [(p.host, p.field) for p in bad] == [("r1", "api_key_file")]
    assert "s1 has another key" in str(bad[0])
    assert "the router none" in str(check_keys("r1", None, {"s1": "k"})[0])


def test_status_view_says_in_or_out_and_healthy_per_server(catalog: Catalog) -> None:
    from llmfleet.router import router_view

    def http(method: str, url: str, *, headers: dict, json=None):
        assert (method, url) == ("GET", "http://10.0.9.1:30000/workers")
        return 200, {
            "workers": [
                {"id": "1", "url": "http://10.0.0.1:8000", "status": "ready", "is_healthy": True},
                {"id": "2", "url": "http://10.0.1.1:8000", "status": "ready", "is_healthy": False},
                {"id": "3", "url": "http://10.0.7.7:8000", "status": "draining", "load": 2},
            ]
        }

    (view,) = router_view(fleet_plans(_inventory(), catalog), http)
    rows = {(w["host"], w["url"]): (w["in"], w["status"], w["healthy"]) for w in view["workers"]}
    assert rows == {
        ("s1", "http://10.0.0.1:8000"): (True, "ready", True),
        ("s2", "http://10.0.0.2:8001"): (False, "out", None),  # taken out, or never added
        ("g1", "http://10.0.1.1:8000"): (True, "ready", False),
        (None, "http://10.0.7.7:8000"): (False, "draining", True),  # not in the inventory
    }
    assert view["ready"] and view["error"] is None
    (down,) = router_view(fleet_plans(_inventory(), catalog), lambda *a, **k: (0, "refused"))
    assert not down["ready"] and "router r1" in down["error"]
