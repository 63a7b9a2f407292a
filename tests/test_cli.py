"""The llmfleet command as users and scripts call it."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

from conftest import cli

from llmfleet.cli import main


def run(capsys, *argv: str) -> tuple[int, str, str]:
    rc = main(list(argv))
    out = capsys.readouterr()
    return rc, out.out, out.err


def test_recipes_list_json_has_every_recipe(capsys, catalog) -> None:
    rc, out, _ = run(capsys, "recipes", "list", "--json")
    rows = json.loads(out)
    assert rc == 0 and {r["id"] for r in rows} == set(catalog.recipes)
    assert all({"id", "hardware", "engine", "workload", "source"} <= set(r) for r in rows)


def test_recipes_list_filters(capsys) -> None:
    _, out, _ = run(capsys, "recipes", "list", "--json", "--hardware", "mi300x")
    assert {r["hardware"] for r in json.loads(out)} == {"mi300x"}


def test_render_json_contract(capsys) -> None:
    rc, out, _ = run(
        capsys,
        "recipes",
        "render",
        "vllm-gb200-bf16-2node",
        "--set",
        "master_addr=10.9.0.1",
        "--rank",
        "1",
        "--json",
    )
    data = json.loads(out)
    assert rc == 0 and set(data) == {"id", "engine", "argv", "env", "docker", "sysctl"}
    assert data["docker"] is None
    assert data["argv"][-7:] == [
        "--nnodes",
        "2",
        "--node-rank",
        "1",
        "--master-addr",
        "10.9.0.1",
        "--headless",
    ]


def test_render_docker_recipe(capsys) -> None:
    _, out, _ = run(
        capsys, "recipes", "render", "lambda-b200-sglang", "--set", "port=9000", "--json"
    )
    data = json.loads(out)
    assert data["docker"]["image"] == "lmsysorg/sglang:latest"
    assert "9000:9000" in data["docker"]["options"]


def test_render_unit_shows_systemd_unit(capsys) -> None:
    rc, out, _ = run(
        capsys,
        "recipes",
        "render",
        "ascend-a3-w4a8-in16k-out1k-20ms",
        "--set",
        "network_interface=enp1s0",
        "--unit",
    )
    assert rc == 0
    assert "UnsetEnvironment=https_proxy http_proxy" in out
    assert "source /usr/local/Ascend/ascend-toolkit/set_env.sh" in out
    assert "HCCL_SOCKET_IFNAME=enp1s0" in out


def test_bad_input_exits_2_with_a_message(capsys) -> None:
    rc, _, err = run(capsys, "recipes", "render", "vllm-h200-bf16-text", "--set", "prot=1")
    assert rc == 2 and "prot: unknown key" in err and "did you mean port?" in err
    rc, _, err = run(capsys, "recipes", "show", "no-such-recipe")
    assert rc == 2 and "unknown recipe 'no-such-recipe'" in err


def test_show_json(capsys) -> None:
    _, out, _ = run(capsys, "recipes", "show", "sglang-h200-bf16-nextn", "--json")
    data = json.loads(out)
    assert data["source"]["seed"].startswith("002_")
    assert "cuda-ipc" in data["overlays"] and "thinking-off" not in data["overlays"]
    assert data["benchmark"]["results"]["output_tok_s"] == 222.84


def test_plan_reads_a_pyinfra_inventory_with_group_data(tmp_path, capsys, monkeypatch) -> None:
    (tmp_path / "group_data").mkdir()
    (tmp_path / "fleet.py").write_text(
        textwrap.dedent("""
        h100s = [("gpu1", {"ssh_hostname": "10.0.0.1"}),
                 ("gpu2", {"ssh_hostname": "10.0.0.2", "recipe": "vllm-h200-fp8-text-dp-ep"})]
    """)
    )
    (tmp_path / "group_data" / "h100s.py").write_text(
        'hardware = "h100"\nrecipe = "vllm-h200-bf16-text"\n'
    )
    rc, out, err = cli("plan", "fleet.py", "--json", cwd=tmp_path)
    rows = {r["host"]: r for r in json.loads(out)}
    assert rc == 2
    assert not rows["gpu1"]["ok"]
    assert [p["field"] for p in rows["gpu1"]["problems"] if p["severity"] == "error"] == ["memory"]
    assert rows["gpu2"]["ok"] and rows["gpu2"]["memory"]["fits"]
    rc, out, err = cli("plan", "fleet.py", cwd=tmp_path)
    assert "gpu1: memory:" in err and "nothing was connected to" in out


def test_plan_missing_inventory(capsys) -> None:
    rc, _, err = cli("plan", "does-not-exist.py")
    assert rc == 2 and "no such file" in err


def test_console_script_help() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "llmfleet.cli", "--help"], capture_output=True, text=True, check=True
    ).stdout
    for word in ("recipes", "plan", "lab"):
        assert word in out
    out = subprocess.run(
        [sys.executable, "-m", "llmfleet.cli", "recipes", "render", "--help"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "overlay." in out and "--rank" in out
