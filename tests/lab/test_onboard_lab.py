"""deploys/onboard.py on lab hosts given NVIDIA, ROCm and Ascend profiles.

The stacks come from the lab's STAND-IN vendor repositories and installers
(``llmfleet/lab/vendor.py``): real signed apt repositories and real package
and file names, small packages whose tools print outputs recorded on real
machines.  So the role's real code paths run: keys, sources, a scoped apt
update, pinned installs, holds, services, groups, checksummed installers,
and verify.  Everything is asserted on the hosts over SSH.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hostfixtures import output

from .labkit import ROOT, fresh_lab, run_pyinfra, ssh_run

pytestmark = pytest.mark.lab

INVENTORY = "inventories/lab_stacks.py"
NVIDIA_PACKAGES = {
    "nvidia-open-580": "580.159.04-1",
    "nvidia-fabricmanager-580": "580.159.04-1",
    "libnvidia-nscq-580": "580.159.04-1",
    "datacenter-gpu-manager-4-cuda13": "1:4.4.2-1",
}
NVIDIA_UNITS = ("nvidia-persistenced", "nvidia-fabricmanager", "nvidia-dcgm")


@pytest.fixture(scope="module")
def lab_state() -> Iterator[dict[str, Any]]:
    with fresh_lab(3) as state:
        yield state


def hosts(state: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {h["name"]: h for h in state["hosts"]}


def onboard(*args: str, inventory: str = INVENTORY):
    return run_pyinfra("deploys/onboard.py", *args, inventory=inventory)


def changed(stdout: str) -> int:
    m = re.search(r"Grand total\s+\S+\s+(\S+)", stdout)
    assert m, stdout[-3000:]
    return 0 if m.group(1) == "-" else int(m.group(1))


def stack_row(stdout: str, host: str) -> str:
    """The host's row of the accelerator stack table (first line of it)."""
    table = stdout[stdout.index("accelerator stack") :]
    return next(line for line in table.splitlines() if line.startswith(f"│ {host} "))


def test_onboard_converges_every_stack_and_a_second_run_changes_nothing(
    lab_state: dict[str, Any],
) -> None:
    dry = subprocess.run(  # no -y with --dry: pyinfra would take it as "go ahead"
        [sys.executable, "-m", "pyinfra", "--dry", INVENTORY, "deploys/onboard.py"],
        cwd=ROOT,
        env={**os.environ, "COLUMNS": "200"},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert dry.returncode == 0, dry.stdout[-3000:] + dry.stderr[-3000:]
    assert "accelerator stack (dry run: planned, nothing applied)" in dry.stdout
    assert "nvidia-open-580=580.159.04-1" in stack_row(dry.stdout, "lab1")
    for host in lab_state["hosts"]:  # nothing was applied
        ssh_run(host, "! ls /etc/apt/sources.list.d/llmfleet-* /var/cache/llmfleet 2>/dev/null")
    boot_id = "cat /proc/sys/kernel/random/boot_id"
    boots = {name: ssh_run(host, boot_id) for name, host in hosts(lab_state).items()}
    first = onboard()
    assert first.returncode == 0, first.stdout[-4000:]
    assert "ok: 4 x NVIDIA H200" in stack_row(first.stdout, "lab1")
    assert "ok: 1 x AMD Radeon RX 7800 XT" in stack_row(first.stdout, "lab2")
    assert "ok: 3 x Ascend910" in stack_row(first.stdout, "lab3")
    # a kernel module was installed: lab1 (stack_reboot=always) rebooted and came back
    # with its services up; the other containers report the reboot as skipped
    h = hosts(lab_state)
    assert "reboot for nvidia-open-580" in stack_row(first.stdout, "lab1")
    assert ssh_run(h["lab1"], boot_id) != boots["lab1"]
    assert "skipped: systemd-nspawn" in stack_row(first.stdout, "lab2")
    assert ssh_run(h["lab2"], boot_id) == boots["lab2"]

    lab1 = h["lab1"]
    sources = ssh_run(lab1, "cat /etc/apt/sources.list.d/llmfleet-cuda.sources")
    assert "URIs: http://10.213.0.1:8091/vendor/nvidia/compute/cuda/repos/debian12/x86_64/" in (
        sources
    )
    assert "Signed-By: /etc/apt/keyrings/llmfleet-cuda.asc" in sources
    assert "BEGIN PGP PUBLIC KEY BLOCK" in ssh_run(lab1, "cat /etc/apt/keyrings/llmfleet-cuda.asc")
    query = "dpkg-query -W -f '${Package} ${Version}\\n' " + " ".join(NVIDIA_PACKAGES)
    versions = ssh_run(lab1, query)
    assert dict(line.split(" ", 1) for line in versions.splitlines()) == NVIDIA_PACKAGES
    assert set(ssh_run(lab1, "apt-mark showhold").split()) == set(NVIDIA_PACKAGES)
    for unit in NVIDIA_UNITS:
        state = ssh_run(lab1, f"systemctl is-active {unit}; systemctl is-enabled {unit}")
        assert state.split() == ["active", "enabled"], unit
    assert ssh_run(lab1, "nvidia-smi -L") + "\n" == output("h200x4-vm", "nvidia-smi-L.txt")
    assert ssh_run(lab1, "nv-fabricmanager --version").endswith(": 580.159.04")

    lab2 = h["lab2"]
    assert set(ssh_run(lab2, "apt-mark showhold").split()) == {"amdgpu-dkms", "rocm"}
    assert "Pin-Priority: 600" in ssh_run(lab2, "cat /etc/apt/preferences.d/llmfleet-rocm.pref")
    assert ssh_run(lab2, "getent group render video | cut -d: -f1").split() == ["render", "video"]

    lab3 = h["lab3"]
    assert ssh_run(lab3, "npu-smi info") + "\n" == output("atlas-a3-public", "npu-smi-info.txt")
    for script in ("ascend-toolkit/set_env.sh", "nnal/atb/set_env.sh"):
        ssh_run(lab3, f"test -s /usr/local/Ascend/{script}")
    assert "Version=8.3.RC1" in ssh_run(lab3, "cat /usr/local/Ascend/nnal/atb/latest/version.info")
    sums = lab_state["services"]["cann_sha256"]
    cached = ssh_run(lab3, "cd /var/cache/llmfleet/installers && sha256sum *.run")
    assert {name: digest for digest, name in (ln.split() for ln in cached.splitlines())} == sums

    again = onboard()
    assert again.returncode == 0 and changed(again.stdout) == 0, again.stdout[-4000:]


def test_drift_is_repaired_held_again_and_restarted(lab_state: dict[str, Any]) -> None:
    """What an unattended upgrade or a tired operator leaves behind."""
    lab1 = hosts(lab_state)["lab1"]
    ssh_run(lab1, "apt-mark unhold nvidia-fabricmanager-580; systemctl stop nvidia-fabricmanager")
    fixed = onboard("--limit", "lab1")
    assert fixed.returncode == 0, fixed.stdout[-4000:]
    assert "hold nvidia-fabricmanager-580" in fixed.stdout
    assert "nvidia-fabricmanager-580" in ssh_run(lab1, "apt-mark showhold").split()
    assert ssh_run(lab1, "systemctl is-active nvidia-fabricmanager") == "active"
    assert changed(onboard("--limit", "lab1").stdout) == 0


def test_missing_env_script_fails_verify_with_what_to_do(lab_state: dict[str, Any]) -> None:
    lab3 = hosts(lab_state)["lab3"]
    ssh_run(lab3, "rm /usr/local/Ascend/nnal/atb/set_env.sh")
    broken = onboard("--limit", "lab3")
    assert broken.returncode != 0
    assert "env script /usr/local/Ascend/nnal/atb/set_env.sh: missing" in broken.stdout
    # nnal's version file says it is installed: re-installing it is a decision, so
    # remove the version file and the role runs the installer again
    ssh_run(lab3, "rm /usr/local/Ascend/nnal/atb/latest/version.info")
    repaired = onboard("--limit", "lab3")
    assert repaired.returncode == 0, repaired.stdout[-4000:]
    assert "nnal: install 8.3.RC1" in repaired.stdout
    ssh_run(lab3, "test -s /usr/local/Ascend/nnal/atb/set_env.sh")


def test_installer_with_another_checksum_is_not_run(
    lab_state: dict[str, Any], tmp_path: Path
) -> None:
    lab3 = hosts(lab_state)["lab3"]
    ssh_run(lab3, "rm /usr/local/Ascend/ascend-toolkit/latest/version.cfg")
    toolkit = next(n for n in lab_state["services"]["cann_sha256"] if "toolkit" in n)
    ssh_run(lab3, f"rm -f /var/cache/llmfleet/installers/{toolkit}")
    inventory = tmp_path / "tampered.py"
    inventory.write_text(
        "from inventories.lab_stacks import stacks as _s\n"
        f"BAD = {{{toolkit!r}: 'f' * 64}}\n"
        "hosts = [(n, {**d, 'cann_sha256': {**d['cann_sha256'], **BAD}}) for n, d in _s"
        " if n == 'lab3']\n"
    )
    refused = onboard(inventory=str(inventory))
    assert refused.returncode != 0
    assert "sha256" in refused.stdout.lower() and toolkit in refused.stdout
    version_cfg = "/usr/local/Ascend/ascend-toolkit/latest/version.cfg"
    assert ssh_run(lab3, f"test -e {version_cfg} || echo absent") == "absent"
    assert onboard("--limit", "lab3").returncode == 0  # the pinned checksum installs it
