"""Validation before any connection: each error names the host, the field and a fix."""

from __future__ import annotations

import pytest

from llmfleet.validate import check_fleet, plan_host


def _errors(plan):
    return [p for p in plan.problems if p.severity == "error"]


def test_good_host_plans_cleanly(catalog) -> None:
    plan = plan_host(catalog, "gpu1", {"hardware": "h200", "recipe": "vllm-h200-fp8-text-dp-ep"})
    assert plan.ok, plan.problems
    assert plan.rendered.parallel.world == 8
    assert plan.fit.fits and plan.fit.per_device_gb == 51.2


def test_unknown_recipe_suggests_close_ids(catalog) -> None:
    plan = plan_host(catalog, "gpu1", {"hardware": "h200", "recipe": "vllm-h200-bf16-txt"})
    (err,) = _errors(plan)
    assert err.host == "gpu1" and err.field == "recipe"
    assert "did you mean vllm-h200-bf16-text" in err.message


def test_unknown_hardware(catalog) -> None:
    plan = plan_host(catalog, "gpu1", {"hardware": "h300", "recipe": "vllm-h200-bf16-text"})
    (err,) = _errors(plan)
    assert err.field == "hardware" and "unknown hardware profile 'h300'" in err.message


def test_missing_recipe_says_where_to_set_it(catalog) -> None:
    (err,) = _errors(plan_host(catalog, "gpu1", {"hardware": "h200"}))
    assert err.field == "recipe" and "group_data" in err.fix


def test_bf16_on_one_h100_host_needs_two_nodes_or_fp8(catalog) -> None:
    plan = plan_host(catalog, "gpu1", {"hardware": "h100", "recipe": "vllm-h200-bf16-text"})
    errors = _errors(plan)
    assert [e.field for e in errors] == ["memory"]
    (err,) = errors
    assert "~100.9 GB each" in err.message and "h100 device offers 72.0 GB" in err.message
    assert "2 nodes" in err.fix and "FP8" in err.fix
    assert any(p.severity == "warning" and "verified on h200" in p.message for p in plan.problems)


def test_h100_two_node_recipe_fits(catalog) -> None:
    data = {
        "hardware": "h100",
        "recipe": "sglang-h100-bf16-tp16-2node",
        "master_addr": "10.0.0.1",
        "node_rank": 1,
    }
    plan = plan_host(catalog, "gpu2", data)
    assert plan.ok, plan.problems
    assert plan.rendered.parallel.per_node == 8


def test_parallel_size_larger_than_the_host(catalog) -> None:
    data = {
        "hardware": "h200",
        "recipe": "vllm-h200-bf16-text",
        "flags": {"--tensor-parallel-size": "16"},
    }
    errors = _errors(plan_host(catalog, "gpu1", data))
    assert any(
        e.field == "parallelism" and "needs 16 devices per node" in e.message and "8" in e.message
        for e in errors
    )


def test_recipe_for_another_vendor(catalog) -> None:
    (err,) = _errors(
        plan_host(catalog, "amd1", {"hardware": "mi300x", "recipe": "vllm-h200-bf16-text"})
    )
    assert err.field == "recipe" and "nvidia recipe" in err.message and "mi300x" in err.message
    assert "vllm-mi300x-fp8-docker" in err.fix


def test_unknown_override_key_from_host_data_is_an_error(catalog) -> None:
    data = {"hardware": "h200", "recipe": "vllm-h200-bf16-text", "overlays": {"tool-caling": True}}
    (err,) = _errors(plan_host(catalog, "gpu1", data))
    assert "unknown overlay 'tool-caling'" in err.message and "tool-calling" in err.message


def test_multinode_needs_master_addr(catalog) -> None:
    (err,) = _errors(
        plan_host(catalog, "gb1", {"hardware": "gb200", "recipe": "vllm-gb200-bf16-2node"})
    )
    assert err.field == "master_addr"


def test_port_clash_between_hosts_on_one_address(catalog) -> None:
    a = plan_host(catalog, "a", {"hardware": "h200", "recipe": "vllm-h200-bf16-text"}, "10.0.0.5")
    b = plan_host(catalog, "b", {"hardware": "h200", "recipe": "vllm-h200-bf16-text"}, "10.0.0.5")
    c = plan_host(
        catalog,
        "c",
        {"hardware": "h200", "recipe": "vllm-h200-bf16-text", "port": 8001},
        "10.0.0.5",
    )
    check_fleet([a, b, c])
    assert [e.field for e in _errors(a)] == ["port"] and "also used by b" in _errors(a)[0].message
    assert c.ok


def test_duplicate_node_rank(catalog) -> None:
    plans = [
        plan_host(
            catalog,
            n,
            {
                "hardware": "gb200",
                "recipe": "vllm-gb200-bf16-2node",
                "master_addr": "10.0.0.1",
                "node_rank": 0,
            },
            n,
        )
        for n in ("gb1", "gb2")
    ]
    check_fleet(plans)
    assert any(e.field == "node_rank" for e in _errors(plans[1]))


def test_every_catalog_recipe_fits_its_own_hardware(catalog) -> None:
    for r in catalog.recipes.values():
        data = {
            "hardware": r.hardware,
            "recipe": r.id,
            "master_addr": "10.0.0.1",
            "network_interface": "eth0",
        }
        plan = plan_host(catalog, "h", data)
        assert plan.ok, (r.id, plan.problems)


def test_an_engine_file_missing_a_key_is_named_not_a_traceback(tmp_path) -> None:
    import shutil

    import yaml
    from conftest import cli

    from llmfleet.catalog import Catalog, CatalogError

    root = tmp_path / "files"
    shutil.copytree(Catalog().root, root)
    doc = yaml.safe_load((root / "engines" / "sglang.yaml").read_text())
    del doc["host_flag"]
    (root / "engines" / "sglang.yaml").write_text(yaml.safe_dump(doc))
    with pytest.raises(CatalogError, match=r"sglang.yaml: missing keys \['host_flag'\]"):
        Catalog(root)
    rc, _, err = cli("recipes", "list", env={"LLMFLEET_FILES": str(root)})
    assert rc == 2 and "missing keys ['host_flag']" in err and "Traceback" not in err


def test_accelerator_stack_must_be_a_stack_file(catalog) -> None:
    from llmfleet.validate import plan_onboard

    plan = plan_onboard(catalog, "gpu1", {"hardware": "h200", "accelerator_stack": "cuda"})
    (problem,) = plan.problems
    assert problem.field == "accelerator_stack" and "nvidia" in problem.fix
    assert plan_onboard(catalog, "gpu1", {"hardware": "h200", "accelerator_stack": "none"}).ok
