"""The preflight deploy on pyinfra's @fake connector, answering with the real h200x4-vm output.

A host with no ``hardware`` is still probed, and fails with the profile its
devices match as the fix; a CPU host that says what it is passes.
"""

from __future__ import annotations

from pathlib import Path

from fakehosts import outcome, run_deploy
from hostfixtures import output, raw

VM = "h200x4-vm"
BASICS = "=== $ cat /etc/os-release"  # in the basics fact's command


def test_no_hardware_names_the_matching_profile(tmp_path: Path) -> None:
    vm = {
        BASICS: raw(VM, "host.txt").splitlines(),
        "nvidia-smi -q -x": output(VM, "nvidia-smi-q-xml.txt").splitlines(),
        "nvidia-smi topo -m": output(VM, "nvidia-smi-topo.txt").splitlines(),
    }
    # a host that passes: pyinfra prints no JSON result once every host has failed
    cpu = {BASICS: raw(VM, "host.txt").splitlines()}
    result = run_deploy(
        tmp_path,
        "deploys/preflight.py",
        {"gpu1": (vm, {}), "cpu1": (cpu, {"hardware": "cpu"})},
    )
    assert result["results"]["failed_hosts"] == ["@fake/gpu1"]
    (failed,) = outcome(result, "@fake/gpu1")
    assert failed == (
        "llmfleet: preflight: hardware: no hardware set; the devices match profile h200 "
        "(4 x NVIDIA H200): set hardware=h200"
    )
    assert outcome(result, "@fake/cpu1") == {}  # read-only: nothing ran on it
    assert "detected profile: h200" in result["stdout"]
    assert "fix hardware: set hardware=h200" in result["stdout"]
