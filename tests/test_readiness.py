"""Readiness: each mismatch between a host and its inventory entry names host, field and fix."""

from __future__ import annotations

import dataclasses

import pytest
from hostfixtures import output, raw

from llmfleet.hostfacts.devices import (
    FabricManager,
    parse_npu_smi_info,
    parse_nvidia_smi_xml,
    parse_topo_matrix,
)
from llmfleet.hostfacts.framing import split_sections
from llmfleet.hostfacts.system import HostFacts, OsRelease, parse_basics
from llmfleet.readiness import assess, profile_for

VM = "h200x4-vm"
FP8 = "vllm-h200-fp8-text-dp-ep"


@pytest.fixture
def facts() -> HostFacts:
    """The real h200x4-vm, with a df result (host.txt has none) of 900 GB free."""
    f = parse_basics(split_sections(raw(VM, "host.txt")))
    f.accelerators = parse_nvidia_smi_xml(output(VM, "nvidia-smi-q-xml.txt"))
    f.topology = parse_topo_matrix(output(VM, "nvidia-smi-topo.txt"))
    f.disk_free_gb = {"/": 900.0}
    return f


def _errors(report):
    return {p.field: p for p in report.problems if p.severity == "error"}


def _warnings(report):
    return {p.field: p for p in report.problems if p.severity == "warning"}


def _eight(facts: HostFacts, **changes) -> HostFacts:
    """The same host as if it had 8 GPUs (a full HGX board), other fields replaced."""
    acc = facts.accelerators
    devices = acc.devices + tuple(dataclasses.replace(d, index=d.index + 4) for d in acc.devices)
    acc = dataclasses.replace(acc, devices=devices, **changes)
    return dataclasses.replace(facts, accelerators=acc)


@pytest.mark.parametrize(
    "name, profile",
    [
        ("NVIDIA H200", "h200"),
        ("NVIDIA H100 80GB HBM3", "h100"),
        ("NVIDIA B200", "b200"),
        ("NVIDIA GB200", "gb200"),  # not b200, although it contains "B200"
        ("AMD Instinct MI300X", "mi300x"),
        ("AMD INSTINCT MI300X", "mi300x"),
        ("AMD Instinct MI355X", "mi355x"),
        ("Ascend910", "atlas-800i-a3"),
        ("AMD Radeon RX 7800 XT", None),
        ("NVIDIA A100-SXM4-80GB", None),
    ],
)
def test_profile_for_device_names(catalog, name, profile) -> None:
    assert profile_for(catalog, name) == profile


def test_real_vm_as_h200(catalog, facts) -> None:
    r = assess(catalog, "vm", facts, "h200", FP8)
    assert r.detected == "h200"
    rows = {row.check: row for row in r.rows}
    assert rows["os"].detail == "Ubuntu 24.04.3 LTS, kernel 6.18.44-fc-v657-gpu"
    assert rows["hardware"].detail == "4 x NVIDIA H200 matches h200"
    assert rows["device memory"].detail == "143771 MiB (151 GB) each; h200 profile 141 GB"
    assert rows["driver"].detail == "driver 580.159.04, CUDA 13.0"
    assert rows["topology"].detail == "NVLink between all 4 GPUs (>= 18 links a pair)"
    assert rows["disk"].status == "ok"
    # four GPUs on a profile of eight: an error, and no h200 recipe fits 4 devices per node
    (err,) = _errors(r).values()
    assert err.host == "vm" and err.field == "device count"
    assert err.message == "4 devices, profile h200 expects 8"
    assert r.recipes == []
    warnings = _warnings(r)
    # no fabric manager in the VM, but the GPUs registered with the fabric: a warning only
    assert "fabric state is Completed" in warnings["fabric manager"].message
    assert "no cpufreq interface" in warnings["cpufreq"].message
    sched = warnings["sched migration cost"].message
    assert "no sysctl on kernel 6.18.44-fc-v657-gpu (>= 5.13)" in sched
    assert "/sys/kernel/debug/sched/migration_cost_ns" in sched


def test_full_board_passes_and_lists_fitting_recipes(catalog, facts) -> None:
    r = assess(catalog, "gpu1", _eight(facts), "h200", FP8)
    assert r.ok, r.problems
    assert FP8 in r.recipes and "vllm-h200-bf16-text" in r.recipes
    assert all(catalog.recipe(rid.split()[0]).hardware == "h200" for rid in r.recipes)


def test_mismatched_hardware(catalog, facts) -> None:
    r = assess(catalog, "gpu1", _eight(facts), "h100")
    err = _errors(r)["hardware"]
    assert err.message == "inventory says h100 but the host has 8 x NVIDIA H200 (profile h200)"
    assert err.fix == "set hardware: h200 for this host in the inventory"
    assert r.detected == "h200"


def test_h100_host_in_an_h200_inventory(catalog, facts) -> None:
    h100 = [
        dataclasses.replace(d, name="NVIDIA H100 80GB HBM3") for d in facts.accelerators.devices
    ]
    facts.accelerators = dataclasses.replace(facts.accelerators, devices=tuple(h100))
    err = _errors(assess(catalog, "gpu1", facts, "h200"))["hardware"]
    assert "inventory says h200 but the host has 4 x NVIDIA H100 80GB HBM3 (profile h100)" in str(
        err
    )


def test_no_devices(catalog, facts) -> None:
    facts.accelerators = None
    err = _errors(assess(catalog, "gpu1", facts, "mi300x"))["devices"]
    assert err.message == "no rocm devices found (amd-smi/rocm-smi missing or listed none)"
    assert "driver" in err.fix


def test_unsupported_os(catalog, facts) -> None:
    facts.os = OsRelease("rocky", "9.4", "Rocky Linux 9.4 (Blue Onyx)")
    err = _errors(assess(catalog, "gpu1", _eight(facts), "h200"))["os"]
    assert err.message == "Rocky Linux 9.4 (Blue Onyx) (rocky 9.4) is not supported"
    assert err.fix == "reinstall with Debian 12, Ubuntu 22.04 or Ubuntu 24.04"
    facts.os = OsRelease("ubuntu", "20.04", "Ubuntu 20.04.6 LTS")
    assert "os" in _errors(assess(catalog, "gpu1", facts, "h200"))


def test_fabric_manager_version_mismatch(catalog, facts) -> None:
    f = _eight(facts)
    f.fabric_manager = FabricManager("active", "580.95.05")
    err = _errors(assess(catalog, "gpu1", f, "h200"))["fabric manager"]
    assert err.message == "version 580.95.05 does not match driver 580.159.04"
    assert "nvidia-fabricmanager of exactly 580.159.04" in err.fix
    f.fabric_manager = FabricManager("active", "580.159.04")
    r = assess(catalog, "gpu1", f, "h200")
    assert r.ok and {row.check: row.detail for row in r.rows}["fabric manager"] == (
        "580.159.04 active"
    )
    f.fabric_manager = FabricManager("failed", "580.159.04")
    err = _errors(assess(catalog, "gpu1", f, "h200"))["fabric manager"]
    assert err.message == "580.159.04 installed but failed"


def test_fabric_manager_missing_on_bare_metal(catalog, facts) -> None:
    f = _eight(facts)
    devices = tuple(
        dataclasses.replace(d, fabric_state="In Progress") for d in f.accelerators.devices
    )
    f.accelerators = dataclasses.replace(f.accelerators, devices=devices)
    err = _errors(assess(catalog, "gpu1", f, "h200"))["fabric manager"]
    assert err.message == "not installed on an NVSwitch host (h200)"


def test_too_little_disk_for_the_weights(catalog, facts) -> None:
    f = _eight(facts)
    f.disk_free_gb = {"/var/lib": 300.0}
    r = assess(catalog, "gpu1", f, "h200", FP8, hf_home="/var/lib/llmfleet/hf")
    err = _errors(r)["disk"]
    assert err.message == (
        "300.0 GB free at /var/lib/llmfleet/hf, Qwen/Qwen3.5-397B-A17B-FP8 weights need ~410 GB "
        "(+10% headroom: 451 GB)"
    )
    assert "hf_home" in err.fix
    assert r.recipes == []  # no h200 recipe's weights fit 300 GB either
    f.disk_free_gb = {"/": 500.0}  # enough for FP8, not for BF16 (807 GB)
    r = assess(catalog, "gpu1", f, "h200", FP8)
    assert r.ok and FP8 in r.recipes and "vllm-h200-bf16-text" not in r.recipes


def test_recipe_tuning_wishes_are_warnings(catalog) -> None:
    """The Ascend recipes ask for a governor and sysctls; a host without them gets warnings."""
    npus = parse_npu_smi_info(raw("atlas-a3-public", "npu-smi-info.txt"))
    sixteen = tuple(dataclasses.replace(npus.devices[0], index=i) for i in range(16))
    f = HostFacts(
        os=OsRelease("ubuntu", "22.04", "Ubuntu 22.04.5 LTS"),
        kernel="5.15.0-119-generic",
        cpufreq_governor="ondemand",
        sysctl={"vm.swappiness": "60", "kernel.numa_balancing": "1"},
        disk_free_gb={"/": 2000.0},
        accelerators=dataclasses.replace(npus, devices=sixteen),
    )
    r = assess(catalog, "a3", f, "atlas-800i-a3", "ascend-a3-w4a8-in16k-out1k-20ms")
    assert r.ok and r.detected == "atlas-800i-a3"
    assert "ascend-a3-w4a8-in16k-out1k-20ms" in r.recipes
    warnings = _warnings(r)
    assert warnings["cpufreq"].message == "governor ondemand, recipe wants performance"
    assert any(k.startswith("sysctl ") for k in warnings)
    assert "recipe wants" in warnings["sched migration cost"].message


def test_cpu_profile_needs_no_devices(catalog, facts) -> None:
    facts.accelerators = None
    r = assess(catalog, "lab1", facts, "cpu", "lab-cpu-vllm-tiny")
    assert (
        r.ok
        and r.detected == "cpu"
        and r.recipes
        == [
            "lab-cpu-stub",
            "lab-cpu-vllm-tiny",
            "lab-cpu-vllm-tiny-docker",
            "lab-cpu-vllm-tiny-dp2 (2 nodes)",
        ]
    )


def test_unknown_profile_and_no_profile(catalog, facts) -> None:
    err = _errors(assess(catalog, "gpu1", facts, "h300"))["hardware"]
    assert "unknown hardware profile 'h300'" in err.message


def test_no_hardware_names_the_profile_the_devices_match(catalog, facts) -> None:
    r = assess(catalog, "gpu1", facts, None)
    (err,) = _errors(r).values()
    assert err.field == "hardware"
    assert err.message == "no hardware set; the devices match profile h200 (4 x NVIDIA H200)"
    assert err.fix == "set hardware=h200"
    assert r.detected == "h200"
    # the host checks still ran
    assert {"os", "cpu", "cpufreq", "disk"} <= {row.check for row in r.rows}


def test_no_hardware_and_no_devices(catalog, facts) -> None:
    facts.accelerators = None
    err = _errors(assess(catalog, "gpu1", facts, None))["hardware"]
    assert err.message == (
        "no hardware set, and no devices found (nvidia-smi, amd-smi/rocm-smi, npu-smi "
        "missing or listed none)"
    )
    assert err.fix.endswith("or set hardware=cpu for a host without accelerators")
