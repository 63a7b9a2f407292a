"""deploys/router.py on pyinfra's @fake connector: what it queues on a router host,
what it leaves alone, and how a bad router plan fails only the router host."""

from __future__ import annotations

from pathlib import Path

from fakehosts import outcome, run_deploy

LAB = {"hardware": "cpu", "recipe": "lab-cpu-vllm-tiny"}
SYSTEM = {"uname -s": "Linux", "command -v useradd": "/usr/sbin/useradd"}


def _hosts(**router) -> dict[str, tuple[dict, dict]]:
    return {
        "s1": ({}, {"ssh_hostname": "10.0.0.1", **LAB}),
        "s2": ({}, {"ssh_hostname": "10.0.0.2", **LAB}),
        "r1": (SYSTEM, {"ssh_hostname": "10.0.9.1", "router": True, **router}),
    }


def test_the_router_host_gets_venv_launcher_release_env_and_unit(tmp_path: Path) -> None:
    key = tmp_path / "key"
    key.write_text("k-123\n")
    result = run_deploy(tmp_path, "deploys/router.py", _hosts(api_key_file=str(key)))
    ops = outcome(result, "@fake/r1")
    for name in (
        "Router launcher (the key from the env file, never argv)",
        "Router release manifest",
        "Router environment (0600)",
        "Router unit",
        "Router enabled and running",
    ):
        assert ops.get(f"Router | {name}") == "changed", (name, ops)
    assert "error" not in ops.values(), ops
    assert any("Router: smg==1.13.0 into /opt/llmfleet/tools/smg-" in n for n in ops)
    assert outcome(result, "@fake/s1") == {} == outcome(result, "@fake/s2")
    assert "[@fake/s1] not a router host" in result["stdout"]
    assert "k-123" not in result["stdout"]


def test_a_bad_policy_fails_the_router_host_only(tmp_path: Path) -> None:
    result = run_deploy(tmp_path, "deploys/router.py", _hosts(router_policy="fastest"))
    failed = [op for op in result["results"]["operations"] if "@fake/r1" in op["error"]]
    assert failed and "@fake/r1: router_policy: 'fastest' is not a smg policy" in failed[0]["name"]
    assert "fix: one of cache_aware" in result["stdout"] + failed[0]["name"]


def test_servers_with_their_own_keys_fail_the_router_with_the_fix(tmp_path: Path) -> None:
    hosts = _hosts()
    for name in ("s1", "s2"):
        path = tmp_path / f"{name}.key"
        path.write_text(f"key-of-{name}\n")
        hosts[name][1]["api_key_file"] = str(path)
    result = run_deploy(tmp_path, "deploys/router.py", hosts)
    failed = [op["name"] for op in result["results"]["operations"] if "@fake/r1" in op["error"]]
    assert failed and "s1 has an endpoint key and the router none" in failed[0], failed
