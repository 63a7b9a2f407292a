"""pyinfra facts for the preflight: one round trip each, glue around ``llmfleet.hostfacts``.

Every command succeeds on any host (a missing tool prints nothing and the
fact is None), because the preflight exists to describe half-installed
machines: a fact that fails the host when ``nvidia-smi`` is absent would hide
exactly what the report must say.
"""

from __future__ import annotations

from pyinfra.api import FactBase

from llmfleet.hostfacts import devices, system, tuning
from llmfleet.hostfacts.framing import SECTION_MARK, split_sections
from llmfleet.hostpaths import DEFAULT_HF_HOME


def _framed(sections: dict[str, str]) -> str:
    """A script printing ``=== $ NAME`` before each command's output, as host.txt is framed."""
    return (
        "; ".join(
            f"echo {_quote(SECTION_MARK + name)}; {{ {cmd}; }} 2>/dev/null"
            for name, cmd in sections.items()
        )
        + "; true"
    )


def _quote(text: str) -> str:
    return "'" + text.replace("'", "'\"'\"'") + "'"


def _if_tool(tool: str, cmd: str) -> str:
    return f"if command -v {tool} >/dev/null 2>&1; then {cmd} 2>/dev/null; fi; true"


class HostBasics(FactBase):
    """OS, kernel, CPU/NUMA, cpufreq, scheduler knobs and free disk at ``path``."""

    def command(self, path: str = DEFAULT_HF_HOME) -> str:
        commands = {cmd: cmd for cmd in system.BASICS_COMMANDS.values()}
        commands["df"] = system.disk_command(path)
        return _framed(commands)

    def process(self, output: list[str]) -> system.HostFacts:
        return system.parse_basics(split_sections("\n".join(output)))

    def default(self) -> system.HostFacts:
        return system.HostFacts()


class NvidiaSmi(FactBase):
    """``nvidia-smi -q -x``: GPUs, memory, UUIDs, bus ids, persistence, fabric state, versions."""

    def command(self) -> str:
        return _if_tool("nvidia-smi", "nvidia-smi -q -x")

    def process(self, output: list[str]) -> devices.Accelerators | None:
        return devices.parse_nvidia_smi_xml("\n".join(output))

    def default(self):
        return None


class NvidiaTopology(FactBase):
    """``nvidia-smi topo -m``: NVLink/PCIe links between GPUs and their CPU/NUMA affinity."""

    def command(self) -> str:
        return _if_tool("nvidia-smi", "nvidia-smi topo -m")

    def process(self, output: list[str]) -> devices.Topology | None:
        return devices.parse_topo_matrix("\n".join(output))

    def default(self):
        return None


class FabricManager(FactBase):
    """Fabric manager unit state and binary version (None parts when absent)."""

    def command(self) -> str:
        return _framed(
            {
                "is-active": _if_tool("systemctl", "systemctl is-active nvidia-fabricmanager"),
                "version": _if_tool("nv-fabricmanager", "nv-fabricmanager --version"),
            }
        )

    def process(self, output: list[str]) -> devices.FabricManager:
        s = split_sections("\n".join(output))
        return devices.parse_fabric_manager(s.get("is-active", ""), s.get("version", ""))

    def default(self) -> devices.FabricManager:
        return devices.FabricManager(None, None)


class AmdGpus(FactBase):
    """``amd-smi static --json``, or ``rocm-smi --showproductname --json`` on older ROCm."""

    def command(self) -> str:
        return (
            "if command -v amd-smi >/dev/null 2>&1; then echo '=== $ amd-smi'; "
            "amd-smi static --asic --bus --vram --driver --json 2>/dev/null; "
            "elif command -v rocm-smi >/dev/null 2>&1; then echo '=== $ rocm-smi'; "
            "rocm-smi --showproductname --json 2>/dev/null; fi; true"
        )

    def process(self, output: list[str]) -> devices.Accelerators | None:
        s = split_sections("\n".join(output))
        if "amd-smi" in s:
            return devices.parse_amd_smi_static(s["amd-smi"])
        return devices.parse_rocm_smi_productname(s.get("rocm-smi", ""))

    def default(self):
        return None


class AscendNpus(FactBase):
    """``npu-smi info``: NPU chips, health, HBM and the driver version."""

    def command(self) -> str:
        return _if_tool("npu-smi", "npu-smi info")

    def process(self, output: list[str]) -> devices.Accelerators | None:
        return devices.parse_npu_smi_info("\n".join(output))

    def default(self):
        return None


class HostTuning(FactBase):
    """Tuning state for ``keys`` (sysctls), the debugfs scheduler knob, cpufreq and our unit.

    One round trip; read-only, and every probe tolerates absence, so a VM
    without cpufreq or a container with a read-only /proc/sys is described,
    not failed.
    """

    def command(self, keys: tuple[str, ...], unit: str) -> str:
        return _framed(tuning.tuning_commands(keys, unit))

    def process(self, output: list[str]) -> tuning.TuningState:
        return tuning.parse_tuning(split_sections("\n".join(output)))

    def default(self) -> tuning.TuningState:
        return tuning.TuningState()


# One entry per accelerator vendor (the ids of files/stacks/): the fact that reads its
# devices.  The stack verify and preflight both look devices up here.
DEVICE_FACTS: dict[str, type[FactBase]] = {
    "nvidia": NvidiaSmi,
    "rocm": AmdGpus,
    "cann": AscendNpus,
}
