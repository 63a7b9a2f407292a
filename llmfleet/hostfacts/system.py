"""The host itself: OS release, kernel, CPU/NUMA, sysctls, cpufreq, memory and free
disk, and ``parse_basics``, which reads them all from the basics fact into ``HostFacts``."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from .devices import Accelerators, FabricManager, Topology
from .framing import absent

SCHED_DEBUGFS = "/sys/kernel/debug/sched/migration_cost_ns"
SYSCTLS = ("vm.swappiness", "kernel.numa_balancing", "kernel.sched_migration_cost_ns")


@dataclass(frozen=True)
class OsRelease:
    id: str
    version_id: str
    pretty_name: str
    codename: str | None = None
    id_like: tuple[str, ...] = ()


def parse_os_release(text: str) -> OsRelease | None:
    """``/etc/os-release`` (shell-style KEY=value, values optionally quoted)."""
    values: dict[str, str] = {}
    for line in text.splitlines():
        m = re.match(r"^([A-Z_]+)=(.*)$", line.strip())
        if m:
            values[m.group(1)] = m.group(2).strip().strip('"').strip("'")
    if "ID" not in values:
        return None
    return OsRelease(
        id=values["ID"],
        version_id=values.get("VERSION_ID", ""),
        pretty_name=values.get("PRETTY_NAME", values["ID"]),
        codename=values.get("VERSION_CODENAME") or values.get("UBUNTU_CODENAME"),
        id_like=tuple(values.get("ID_LIKE", "").split()),
    )


def parse_kernel(text: str) -> str | None:
    """``uname -r`` or ``uname -a`` -> kernel release."""
    words = text.split()
    if not words:
        return None
    return words[2] if words[0] == "Linux" and len(words) > 2 else words[0]


def kernel_at_least(release: str | None, major: int, minor: int) -> bool | None:
    m = re.match(r"(\d+)\.(\d+)", release or "")
    return None if not m else (int(m.group(1)), int(m.group(2))) >= (major, minor)


@dataclass(frozen=True)
class NumaNode:
    id: int
    cpus: int
    size_mb: int | None = None


@dataclass(frozen=True)
class Cpu:
    """``lscpu`` essentials plus the NUMA layout (``numactl -H`` when present)."""

    arch: str | None
    model: str | None
    cpus: int | None
    sockets: int | None
    threads_per_core: int | None
    hypervisor: str | None
    numa: tuple[NumaNode, ...]


def _count_cpus(spec: str) -> int:
    """``0-63,128-191`` -> 128; also accepts space-separated lists."""
    total = 0
    for part in re.split(r"[,\s]+", spec.strip()):
        if "-" in part:
            lo, hi = part.split("-", 1)
            total += int(hi) - int(lo) + 1
        elif part.isdigit():
            total += 1
    return total


def parse_lscpu(text: str) -> dict[str, str]:
    out = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep:
            out[key.strip()] = value.strip()
    return out


def parse_numactl(text: str) -> tuple[NumaNode, ...]:
    """``numactl -H``: ``node N cpus: ...`` and ``node N size: M MB``."""
    cpus: dict[int, int] = {}
    sizes: dict[int, int] = {}
    for line in text.splitlines():
        m = re.match(r"^node (\d+) cpus:(.*)$", line)
        if m:
            cpus[int(m.group(1))] = _count_cpus(m.group(2))
        m = re.match(r"^node (\d+) size: (\d+) MB", line)
        if m:
            sizes[int(m.group(1))] = int(m.group(2))
    return tuple(NumaNode(n, cpus[n], sizes.get(n)) for n in sorted(cpus))


def parse_cpu(lscpu: str, numactl: str = "") -> Cpu:
    info = parse_lscpu(lscpu)
    numa = parse_numactl(numactl)
    if not numa:
        numa = tuple(
            NumaNode(int(m.group(1)), _count_cpus(v))
            for k, v in info.items()
            if (m := re.fullmatch(r"NUMA node(\d+) CPU\(s\)", k))
        )

    def num(key: str) -> int | None:
        return int(info[key]) if info.get(key, "").isdigit() else None

    return Cpu(
        arch=info.get("Architecture"),
        model=info.get("Model name"),
        cpus=num("CPU(s)"),
        sockets=num("Socket(s)"),
        threads_per_core=num("Thread(s) per core"),
        hypervisor=info.get("Hypervisor vendor"),
        numa=numa,
    )


def parse_cpufreq_value(text: str) -> str | None:
    """A cpufreq sysfs file's value, or None when the interface is absent (VMs)."""
    if absent(text) or "cannot access" in text or "No such file" in text:
        return None
    return text.strip().splitlines()[0].strip() or None


def parse_sysctl(text: str) -> dict[str, str]:
    """``sysctl a b c`` output; keys the kernel lacks ("cannot stat") are left out."""
    out = {}
    for line in text.splitlines():
        m = re.match(r"^([a-z0-9_.]+)\s*=\s*(.*)$", line.strip())
        if m:
            out[m.group(1)] = m.group(2).strip()
    return out


def parse_debugfs_value(text: str) -> str | None:
    """A debugfs knob's value; None when debugfs is unmounted, locked down or absent."""
    value = (text or "").strip()
    return value if re.fullmatch(r"-?\d+", value) else None


def parse_df(text: str) -> dict[str, float]:
    """``df -Pk PATH...``: mount point -> free GB (10^9 bytes, like the weight sizes)."""
    out = {}
    for line in text.splitlines()[1:]:
        cols = line.split()
        if len(cols) >= 6 and cols[3].isdigit():
            out[cols[5]] = round(int(cols[3]) * 1024 / 1e9, 1)
    return out


def parse_meminfo_total_gb(text: str) -> float | None:
    m = re.search(r"^MemTotal:\s+(\d+) kB", text, re.M)
    return round(int(m.group(1)) * 1024 / 1e9, 1) if m else None


@dataclass
class HostFacts:
    """Everything the readiness check looks at; each part may be None (tool missing)."""

    os: OsRelease | None = None
    kernel: str | None = None
    cpu: Cpu | None = None
    memory_gb: float | None = None
    cpufreq_driver: str | None = None
    cpufreq_governor: str | None = None
    sysctl: dict[str, str] = field(default_factory=dict)
    sched_migration_cost_debugfs: str | None = None
    disk_free_gb: dict[str, float] = field(default_factory=dict)
    accelerators: Accelerators | None = None
    topology: Topology | None = None
    fabric_manager: FabricManager | None = None


# The commands the basics fact runs, framed like host.txt; keys are what the parser looks up.
BASICS_COMMANDS = {
    "os": "cat /etc/os-release",
    "kernel": "uname -r",
    "lscpu": "lscpu",
    "numactl": "numactl -H",
    "meminfo": "cat /proc/meminfo",
    "cpufreq_driver": "cat /sys/devices/system/cpu/cpu0/cpufreq/scaling_driver",
    "governor": "cat /sys/devices/system/cpu/cpu0/cpufreq/scaling_governor",
    "sysctl": "sysctl " + " ".join(SYSCTLS),
    "debugfs": f"cat {SCHED_DEBUGFS}",
}


def disk_command(path: str) -> str:
    """``df`` of ``path``, or of its nearest existing parent (the cache may not exist yet)."""
    quoted = "'" + path.replace("'", "'\"'\"'") + "'"
    return f'p={quoted}; while [ ! -e "$p" ]; do p=$(dirname "$p"); done; df -Pk "$p"'


def _pick(sections: dict[str, str], *commands: str) -> str:
    for cmd in commands:
        if cmd in sections:
            return sections[cmd]
    return ""


def parse_basics(sections: dict[str, str]) -> HostFacts:
    """Host basics from framed sections (the basics fact, or the captured ``host.txt``)."""
    c = BASICS_COMMANDS
    return HostFacts(
        os=parse_os_release(_pick(sections, c["os"])),
        kernel=parse_kernel(_pick(sections, c["kernel"], "uname -a")),
        cpu=parse_cpu(_pick(sections, c["lscpu"]), _pick(sections, c["numactl"])),
        memory_gb=parse_meminfo_total_gb(_pick(sections, c["meminfo"])),
        cpufreq_driver=parse_cpufreq_value(_pick(sections, c["cpufreq_driver"])),
        cpufreq_governor=parse_cpufreq_value(_pick(sections, c["governor"])),
        sysctl=parse_sysctl(_pick(sections, c["sysctl"])),
        sched_migration_cost_debugfs=parse_debugfs_value(_pick(sections, c["debugfs"])),
        disk_free_gb=parse_df(sections.get("df", "")),
    )
