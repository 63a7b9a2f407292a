"""Host fact parsers against real captured output (h200x4-vm) and public examples."""

from __future__ import annotations

from hostfixtures import output, raw

from llmfleet.hostfacts.devices import (
    FabricManager,
    parse_amd_smi_static,
    parse_fabric_manager,
    parse_fm_version,
    parse_npu_smi_info,
    parse_nvidia_smi_xml,
    parse_rocm_smi_productname,
    parse_systemctl_is_active,
    parse_topo_matrix,
)
from llmfleet.hostfacts.framing import split_sections
from llmfleet.hostfacts.system import (
    NumaNode,
    OsRelease,
    disk_command,
    kernel_at_least,
    parse_basics,
    parse_cpu,
    parse_cpufreq_value,
    parse_debugfs_value,
    parse_df,
    parse_os_release,
)

VM = "h200x4-vm"
UUIDS = [
    "GPU-86bf5140-bd35-072e-8387-7bbf868ea6d4",
    "GPU-32b23a95-1569-0138-644e-b22084bffb2b",
    "GPU-11091fa9-e258-f53c-3e9f-a014cd02faa7",
    "GPU-8650a6bd-c773-f23b-58f0-a561c44246b9",
]
BUS_IDS = ["00000000:00:06.0", "00000000:00:07.0", "00000000:00:08.0", "00000000:00:09.0"]


def test_nvidia_smi_xml() -> None:
    acc = parse_nvidia_smi_xml(output(VM, "nvidia-smi-q-xml.txt"))
    assert acc is not None and acc.vendor == "nvidia"
    assert acc.driver_version == "580.159.04" and acc.cuda_version == "13.0"
    assert acc.count == 4 and acc.names == ["NVIDIA H200"]
    assert [d.uuid for d in acc.devices] == UUIDS
    assert [d.bus_id for d in acc.devices] == BUS_IDS
    assert {d.memory_mib for d in acc.devices} == {143771}
    assert all(d.persistence_mode is True for d in acc.devices)
    assert {d.fabric_state for d in acc.devices} == {"Completed"}
    assert acc.devices[0].extra == {
        "architecture": "Hopper",
        "vbios": "96.00.A5.00.1A",
        "serial": "1653724056026",
    }


def test_nvidia_smi_xml_with_transcript_framing_and_garbage() -> None:
    # the parser finds the document inside whatever surrounds it
    assert parse_nvidia_smi_xml(raw(VM, "nvidia-smi-q-xml.txt")).count == 4
    assert parse_nvidia_smi_xml("") is None
    assert parse_nvidia_smi_xml("bash: nvidia-smi: command not found") is None


def test_topology_matrix_with_ansi_header() -> None:
    text = output(VM, "nvidia-smi-topo.txt")
    assert "\x1b[4m" in text  # the real header is underlined: the parser must cope
    topo = parse_topo_matrix(text)
    assert topo.gpus == ("GPU0", "GPU1", "GPU2", "GPU3")
    assert len(topo.links) == 12 and set(topo.links.values()) == {"NV18"}
    assert topo.all_nvlink and topo.min_nvlinks == 18
    assert topo.cpu_affinity == {g: "0-63" for g in topo.gpus}
    assert topo.numa_affinity == {g: "0" for g in topo.gpus}
    assert topo.summary() == "NVLink between all 4 GPUs (>= 18 links a pair)"


def test_topology_mixed_links() -> None:
    text = "\tGPU0\tGPU1\tCPU Affinity\nGPU0\t X \tSYS\t0-7\nGPU1\tSYS\t X \t8-15\n"
    topo = parse_topo_matrix(text)
    assert not topo.all_nvlink and topo.summary() == "mixed links between 2 GPUs: SYS"
    assert parse_topo_matrix("") is None


def test_host_txt_basics() -> None:
    sections = split_sections(raw(VM, "host.txt"))
    assert len(sections) == 25 and sections["nproc"] == "64"
    facts = parse_basics(sections)
    assert facts.os == OsRelease("ubuntu", "24.04", "Ubuntu 24.04.3 LTS", "noble", ("debian",))
    assert facts.kernel == "6.18.44-fc-v657-gpu"
    assert kernel_at_least(facts.kernel, 5, 13) is True
    cpu = facts.cpu
    assert (cpu.arch, cpu.cpus, cpu.sockets, cpu.threads_per_core) == ("x86_64", 64, 1, 1)
    assert cpu.model == "Intel(R) Xeon(R) Processor" and cpu.hypervisor == "KVM"
    assert cpu.numa == (NumaNode(0, 64, 5339),)
    assert facts.memory_gb == 540.9  # MemTotal 528231220 kB
    assert facts.cpufreq_governor is None and facts.cpufreq_driver is None  # VM: no cpufreq
    # sched_migration_cost_ns: "cannot stat" on 6.18, so absent rather than empty
    assert facts.sysctl == {"vm.swappiness": "60", "kernel.numa_balancing": "0"}
    assert facts.sched_migration_cost_debugfs is None
    assert facts.disk_free_gb == {}  # host.txt has no df


def test_numa_from_lscpu_when_numactl_is_missing() -> None:
    lscpu = "CPU(s): 8\nNUMA node(s): 2\nNUMA node0 CPU(s): 0-3\nNUMA node1 CPU(s): 4-7\n"
    assert parse_cpu(lscpu).numa == (NumaNode(0, 4), NumaNode(1, 4))


def test_cpufreq_and_debugfs_values() -> None:
    assert parse_cpufreq_value("performance\n") == "performance"
    assert parse_cpufreq_value("") is None
    missing = (
        "cat: /sys/devices/system/cpu/cpu0/cpufreq/scaling_governor: No such file or directory"
    )
    assert parse_cpufreq_value(missing) is None
    assert parse_debugfs_value("500000\n") == "500000"
    assert parse_debugfs_value("cat: ...: Operation not permitted") is None


def test_df_free_gb() -> None:
    # df -Pk layout (POSIX): Filesystem 1024-blocks Used Available Capacity Mounted-on
    text = (
        "Filesystem     1024-blocks      Used Available Capacity Mounted on\n"
        "/dev/nvme0n1p1  3844640564 123456789 3525836256       4% /\n"
    )
    assert parse_df(text) == {"/": 3610.5}
    assert parse_df("") == {}


def test_disk_command_walks_up_to_an_existing_parent() -> None:
    cmd = disk_command("/var/lib/llmfleet/hf")
    assert cmd.startswith("p='/var/lib/llmfleet/hf'; while [ ! -e \"$p\" ]")
    assert cmd.endswith('df -Pk "$p"')


def test_os_release_debian_and_missing() -> None:
    text = 'PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\nID=debian\nVERSION_ID="12"\n'
    assert parse_os_release(text) == OsRelease("debian", "12", "Debian GNU/Linux 12 (bookworm)")
    assert parse_os_release("") is None


def test_fabric_manager() -> None:
    # the version line as nv-fabricmanager prints it (see the public parsers of it, e.g. gpud)
    assert parse_fm_version("Fabric Manager version is : 535.161.08\n") == "535.161.08"
    assert parse_fm_version("\n\n\tFabric Manager version is : 580.159.04\n\n") == "580.159.04"
    assert parse_fm_version("") is None
    assert parse_systemctl_is_active("active\n") == "active"
    assert parse_systemctl_is_active("inactive\n") == "inactive"
    assert parse_systemctl_is_active("bash: line 1: systemctl: command not found") is None
    fm = parse_fabric_manager("failed\n", "Fabric Manager version is : 580.95.05\n")
    assert fm == FabricManager("failed", "580.95.05")


def test_npu_smi_info_atlas_a3_public_excerpt() -> None:
    acc = parse_npu_smi_info(raw("atlas-a3-public", "npu-smi-info.txt"))
    assert acc.vendor == "cann" and acc.driver_version == "26.0.rc2"
    assert acc.tool_version == "26.0.rc2"
    assert [d.index for d in acc.devices] == [0, 1, 15]  # Phy-ID, the device index engines use
    assert [(d.extra["npu"], d.extra["chip"]) for d in acc.devices] == [
        ("0", "0"),
        ("0", "1"),
        ("7", "1"),
    ]
    assert acc.names == ["Ascend910"] and {d.health for d in acc.devices} == {"OK"}
    assert {d.memory_mib for d in acc.devices} == {65536}
    assert [d.extra["hbm_used_mb"] for d in acc.devices] == ["3419", "2874", "31877"]
    assert [d.bus_id for d in acc.devices] == ["0000:9D:00.0", "0000:9F:00.0", "0000:83:00.0"]
    assert parse_npu_smi_info("") is None


def test_rocm_smi_productname_public_example() -> None:
    acc = parse_rocm_smi_productname(raw("mi250x-public", "rocm-smi-showproductname.json"))
    (dev,) = acc.devices
    assert dev.name == "AMD INSTINCT MI200 (MCM) OAM LC MBA HPE C2"
    assert dev.extra == {"card model": "0x7408", "card sku": "D65201", "gfx version": "gfx9010"}


def test_amd_smi_static_public_example_and_list_shape() -> None:
    acc = parse_amd_smi_static(raw("rx7800xt-public", "amd-smi-static.json"))
    (dev,) = acc.devices
    assert (dev.name, dev.bus_id, dev.memory_mib) == ("AMD Radeon RX 7800 XT", "0000:03:00.0", None)
    assert dev.extra == {"device_id": "0x747e", "target_graphics_version": "gfx1101"}
    # older amd-smi prints a bare list; sizes are {"value", "unit"} leaves
    listed = '[{"gpu": 0, "asic": {"market_name": "AMD Instinct MI300X"}, "bus": {"bdf": "0000:0c:00.0"}, "vram": {"size": {"value": 196592, "unit": "MB"}}, "driver": {"version": "6.10.5"}}]'  # noqa: E501
    acc = parse_amd_smi_static(listed)
    assert acc.devices[0].memory_mib == 196592 and acc.driver_version == "6.10.5"
    assert parse_amd_smi_static("") is None and parse_amd_smi_static("{oops") is None
