"""The accelerator stack planner and verifier (``llmfleet/stacks/``), no hosts.

Facts come from the recorded H200 VM (``tests/fixtures/hosts/h200x4-vm``) where
a device listing is needed, so verify sees what a real nvidia-smi printed.
"""

from __future__ import annotations

import dataclasses

import pytest
from hostfixtures import output

from llmfleet.catalog import load
from llmfleet.hostfacts.devices import parse_nvidia_smi_xml
from llmfleet.hostfacts.system import Cpu, HostFacts, OsRelease
from llmfleet.settings import settings_from
from llmfleet.stacks.plan import StackError, StackPlan, installer_files, load_stack, plan_stack
from llmfleet.stacks.verify import (
    Installed,
    parse_state,
    pending_installers,
    reboot_decision,
    state_command,
    verify,
)
from roles.stack import StackState

CATALOG = load()
DEBIAN = OsRelease("debian", "12", "Debian GNU/Linux 12 (bookworm)")
UBUNTU = OsRelease("ubuntu", "24.04", "Ubuntu 24.04.3 LTS", "noble")
FOCAL = OsRelease("ubuntu", "20.04", "Ubuntu 20.04.6 LTS", "focal")


def facts(os_=UBUNTU, arch="x86_64") -> HostFacts:
    return HostFacts(os=os_, cpu=Cpu(arch, None, None, None, None, None, ()))


def plan(vendor: str, hardware: str, os_=UBUNTU, arch="x86_64", runtime="venv", **data):
    return plan_stack(
        "gpu1",
        load_stack(vendor),
        facts(os_, arch),
        hardware=CATALOG.hw(hardware),
        runtime=runtime,
        settings=settings_from(data),
    )


CANN_DATA = {
    "cann_installer_url": "https://files.example.internal/ascend",
    "cann_sha256": dict.fromkeys(installer_files(load_stack("cann"), "x86_64"), "a" * 64),
}


def names(p: StackPlan) -> list[str]:
    return [pkg.name for pkg in p.packages]


def test_nvidia_hgx_h200_gets_the_pinned_driver_fabric_manager_and_dcgm() -> None:
    p = plan("nvidia", "h200")
    assert [r.uri for r in p.repos] == [
        "https://developer.download.nvidia.com/compute/cuda/repos/ubuntu2404/x86_64/"
    ]
    assert [pkg.spec for pkg in p.packages] == [
        "nvidia-open-580=580.159.04-1",
        "nvidia-fabricmanager-580=580.159.04-1",
        "libnvidia-nscq-580=580.159.04-1",
        "datacenter-gpu-manager-4-cuda13=1:4.4.2-1",
    ]
    assert p.holds == tuple(names(p))
    assert [pkg.name for pkg in p.packages if pkg.kernel_module] == ["nvidia-open-580"]
    assert p.services == ("nvidia-persistenced", "nvidia-fabricmanager", "nvidia-dcgm")
    assert p.expected_devices == 8


def test_gb200_uses_sbsa_and_imex_not_the_fabric_manager() -> None:
    p = plan("nvidia", "gb200", arch="aarch64")
    assert p.repos[0].uri.endswith("/ubuntu2404/sbsa/")
    assert "nvidia-imex-580" in names(p) and "nvidia-fabricmanager-580" not in names(p)
    assert "nvidia-imex" in p.services and "nvidia-fabricmanager" not in p.services


def test_b200_adds_nvlsm_and_refuses_proprietary_modules() -> None:
    assert {"nvlsm", "libnvsdm-580"} <= set(names(plan("nvidia", "b200")))
    with pytest.raises(StackError, match=r"gpu1: stack nvidia: nvidia_open_modules=false.*b200"):
        plan("nvidia", "b200", nvidia_open_modules=False)
    h100 = plan("nvidia", "h100", nvidia_open_modules="false")
    assert "cuda-drivers-580" in names(h100) and "nvidia-open-580" not in names(h100)


def test_a_590_driver_drops_the_branch_suffix_and_adds_the_pinning_package() -> None:
    p = plan("nvidia", "h200", nvidia_driver_version="590.44.01")
    assert [pkg.spec for pkg in p.packages] == [
        "nvidia-driver-pinning-590.44.01",
        "nvidia-open=590.44.01-1",
        "nvidia-fabricmanager=590.44.01-1",
        "libnvidia-nscq=590.44.01-1",
        "datacenter-gpu-manager-4-cuda13=1:4.4.2-1",
    ]
    assert p.driver_version == "590.44.01"
    with pytest.raises(StackError, match="nvidia_driver_version 'latest' is not like"):
        plan("nvidia", "h200", nvidia_driver_version="latest")


def test_docker_recipes_get_the_container_toolkit_repo_and_package() -> None:
    p = plan("nvidia", "h200", runtime="docker")
    assert [r.name for r in p.repos] == ["cuda", "nvidia-container-toolkit"]
    assert p.repos[1].uri == "https://nvidia.github.io/libnvidia-container/stable/deb/amd64/"
    assert "nvidia-container-toolkit" in names(p)
    assert "nvidia-container-toolkit" not in names(plan("nvidia", "h200"))


def test_unsupported_os_names_the_host_and_what_is_supported() -> None:
    with pytest.raises(StackError) as err:
        plan("nvidia", "h200", os_=FOCAL)
    assert str(err.value) == (
        "gpu1: stack nvidia: no nvidia packages for Ubuntu 20.04.6 LTS (ubuntu2004); "
        "supported: debian12, ubuntu2204, ubuntu2404"
    )


def test_site_mirror_rewrites_repository_and_key_urls() -> None:
    mirror = {"https://developer.download.nvidia.com": "http://art.internal/nvidia/"}
    repo = plan("nvidia", "h200", os_=DEBIAN, vendor_mirrors=mirror).repos[0]
    assert repo.uri == "http://art.internal/nvidia/compute/cuda/repos/debian12/x86_64/"
    assert repo.key_url == repo.uri + "3bf863cc.pub"
    assert repo.keyring == "/etc/apt/keyrings/llmfleet-cuda.asc"


def test_rocm_on_debian_uses_the_jammy_repositories_pinned_above_the_distro() -> None:
    p = plan("rocm", "mi300x", os_=DEBIAN)
    assert [(r.uri, r.suite, r.components, r.pin_priority) for r in p.repos] == [
        ("https://repo.radeon.com/rocm/apt/6.4.1", "jammy", ("main",), 600),
        ("https://repo.radeon.com/amdgpu/6.4.1/ubuntu", "jammy", ("main",), 600),
    ]
    assert [pkg.spec for pkg in p.packages] == ["amdgpu-dkms", "rocm"]  # Debian: no extras
    assert p.groups == ("render", "video") and p.repos[0].origin_host == "repo.radeon.com"
    noble = plan_stack(
        "gpu1",
        load_stack("rocm"),
        dataclasses.replace(facts(), kernel="6.8.0-45-generic"),
        hardware=CATALOG.hw("mi355x"),
    )
    assert noble.repos[0].suite == "noble"
    assert [(pkg.name, pkg.distro) for pkg in noble.packages[:2]] == [
        ("linux-headers-6.8.0-45-generic", True),  # DKMS needs them (AMD's guide)
        ("linux-modules-extra-6.8.0-45-generic", True),
    ]
    assert noble.holds == ("amdgpu-dkms", "rocm")  # distro packages are not held


def test_cann_installers_need_a_url_and_a_pinned_checksum_for_every_file() -> None:
    with pytest.raises(StackError, match="cann_installer_url is not set"):
        plan("cann", "atlas-800i-a3")
    partial = {**CANN_DATA, "cann_sha256": {}}
    with pytest.raises(StackError) as err:
        plan("cann", "atlas-800i-a3", **partial)
    assert "no sha256 pinned for Ascend-hdk-910c-npu-driver_25.2.0_linux-x86-64.run" in str(err)
    p = plan("cann", "atlas-800i-a3", **CANN_DATA)
    assert [i.component for i in p.installers] == [
        "driver", "firmware", "toolkit", "kernels", "nnal",
    ]  # fmt: skip
    assert p.installers[2].url == (
        "https://files.example.internal/ascend/Ascend-cann-toolkit_8.3.RC1_linux-x86_64.run"
    )
    assert p.installers[2].path == (
        "/var/cache/llmfleet/installers/Ascend-cann-toolkit_8.3.RC1_linux-x86_64.run"
    )
    assert p.env_scripts == (
        "/usr/local/Ascend/ascend-toolkit/set_env.sh",
        "/usr/local/Ascend/nnal/atb/set_env.sh",
    )
    arm = installer_files(load_stack("cann"), "aarch64")
    assert arm[0] == "Ascend-hdk-910c-npu-driver_25.2.0_linux-aarch64.run"


def test_unknown_stack_lists_the_known_ones() -> None:
    with pytest.raises(
        StackError, match=r"no accelerator stack 'tpu' \(known: cann, nvidia, rocm\)"
    ):
        load_stack("tpu")


# --------------------------------------------------------------------------- verify

H200 = parse_nvidia_smi_xml(output("h200x4-vm", "nvidia-smi-q-xml.txt"))


def healthy(p: StackPlan) -> Installed:
    return Installed(
        packages={pkg.name: pkg.version or "1" for pkg in p.packages},
        holds=frozenset(p.holds),
        services=dict.fromkeys(p.services, "active"),
        files=frozenset(p.env_scripts),
    )


def test_verify_passes_a_converged_4_gpu_vm() -> None:
    p = plan("nvidia", "h200", devices_per_host=4)
    assert verify(p, healthy(p), H200, "580.159.04") == []


def test_verify_names_every_problem_with_a_fix() -> None:
    p = plan("nvidia", "h200")  # the profile expects 8 GPUs; the VM has 4
    drifted = dataclasses.replace(
        healthy(p),
        packages={**healthy(p).packages, "nvidia-fabricmanager-580": "580.95.05-1"},
        holds=frozenset(p.holds) - {"nvidia-open-580"},
        services={**healthy(p).services, "nvidia-fabricmanager": "failed"},
    )
    assert verify(p, drifted, H200, "580.95.05") == [
        "package nvidia-fabricmanager-580=580.159.04-1: installed 580.95.05-1",
        "package nvidia-open-580: not held (apt-mark hold nvidia-open-580)",
        "service nvidia-fabricmanager: failed (journalctl -u nvidia-fabricmanager)",
        "devices: nvidia-smi sees 4, expected 8 (devices_per_host)",
        "fabric manager: version 580.95.05, must equal the driver 580.159.04",
    ]


def test_verify_wants_persistence_mode_and_the_pinned_driver_running() -> None:
    p = plan("nvidia", "h200", devices_per_host=4)
    gpus = list(H200.devices)
    gpus[2] = dataclasses.replace(gpus[2], persistence_mode=False)
    old = dataclasses.replace(H200, devices=tuple(gpus), driver_version="570.172.08")
    assert verify(p, healthy(p), old, "580.159.04") == [
        "driver: running 570.172.08, pinned 580.159.04 (reboot to load the new driver)",
        "persistence mode: off on GPU 2 (nvidia-persistenced running?)",
    ]


def test_verify_without_devices_says_to_reboot_and_env_scripts_are_checked() -> None:
    p = plan("cann", "atlas-800i-a3", **CANN_DATA)
    have = dataclasses.replace(healthy(p), files=frozenset())
    problems = verify(p, have, None, env_scripts=("/usr/local/Ascend/cann/set_env.sh",))
    assert problems[-1] == "devices: npu-smi lists none (driver not loaded? reboot after it)"
    assert sum("env script" in line for line in problems) == 3
    assert len(pending_installers(p, {"toolkit": "Version=8.2.RC1"})) == 5
    assert [i.component for i in pending_installers(p, {"toolkit": "Version=8.3.RC1"})] == [
        "driver", "firmware", "kernels", "nnal",
    ]  # fmt: skip


def test_reboot_only_when_a_kernel_module_changed_on_a_real_host() -> None:
    assert reboot_decision([], None, "auto") == (False, "not needed")
    assert reboot_decision(["nvidia-open-580"], None, "auto") == (
        True,
        "reboot for nvidia-open-580",
    )
    assert reboot_decision(["amdgpu-dkms"], "systemd-nspawn", "auto")[0] is False
    assert "stack_reboot=never" in reboot_decision(["amdgpu-dkms"], None, "never")[1]
    assert reboot_decision(["amdgpu-dkms"], "systemd-nspawn", "always")[0] is True


def test_stack_state_fact_reads_held_packages_units_and_files() -> None:
    text = [
        "=== $ packages",
        "nvidia-open-580 580.159.04-1",
        "=== $ holds",
        "nvidia-open-580",
        "=== $ container",
        "none",
        "=== $ service nvidia-dcgm",
        "inactive",
        "=== $ installer toolkit",
        "Version=8.3.RC1",
        "=== $ file",
        "/usr/local/Ascend/nnal/atb/set_env.sh",
        "=== $ file",
    ]
    got = StackState().process(text)
    assert got["container"] is None
    assert got["installed"] == Installed(
        packages={"nvidia-open-580": "580.159.04-1"},
        holds=frozenset({"nvidia-open-580"}),
        services={"nvidia-dcgm": "inactive"},
        installers={"toolkit": "Version=8.3.RC1"},
        files=frozenset({"/usr/local/Ascend/nnal/atb/set_env.sh"}),
    )


def test_state_command_runs_in_a_shell_and_parses_back(tmp_path) -> None:
    """The fact's script on this (Debian) machine: dpkg is installed, a made-up
    package is not, an installer's version file is read, a missing file is absent."""
    import subprocess

    version_file = tmp_path / "version.info"
    version_file.write_text("Version=8.3.RC1\n")
    script = state_command(
        ("dpkg", "llmfleet-no-such-package"),
        (),
        (("toolkit", str(version_file)),),
        (str(version_file), str(tmp_path / "absent.sh")),
    )
    out = subprocess.run(["sh", "-c", script], capture_output=True, text=True, check=True)
    got = parse_state(out.stdout.splitlines())["installed"]
    dpkg = subprocess.run(
        ["dpkg-query", "-W", "-f", "${Version}", "dpkg"], capture_output=True, text=True
    ).stdout
    assert got.packages == {"dpkg": dpkg}
    assert got.installers == {"toolkit": "Version=8.3.RC1"}
    assert got.files == frozenset({str(version_file)})
