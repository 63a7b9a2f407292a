"""Pure parsers for what a host says about itself: GPUs/NPUs, topology, OS, tuning, disk.

No pyinfra here: every function takes the text a command printed and returns
plain data, so each one is tested byte-for-byte against real captured output
(``tests/fixtures/hosts/``) and the pyinfra facts in ``roles/hostfacts.py``
stay one line of glue.  Parsers are forgiving of a missing tool (empty text,
"command not found") and return ``None``/empty rather than raising, because a
preflight that crashes on the one host it should describe is useless.
"""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field

# --------------------------------------------------------------------------- framing

SECTION_MARK = "=== $ "
# the tool that lists each vendor's devices (AMD: amd-smi, or rocm-smi on older ROCm)
DEVICE_TOOLS = {"nvidia": "nvidia-smi", "rocm": "amd-smi/rocm-smi", "cann": "npu-smi"}
_RC_LINE = re.compile(r"^\[rc=(\d+)\]$")
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def split_sections(text: str) -> dict[str, str]:
    """Split ``=== $ CMD`` framed output into ``{CMD: output}``.

    The captured ``host.txt`` uses this framing, and so does the one-round-trip
    fact that gathers host basics, so one parser serves both. A trailing
    ``[rc=N]`` line is dropped.
    """
    out: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in text.splitlines():
        if line.startswith(SECTION_MARK):
            current = out.setdefault(line[len(SECTION_MARK) :].strip(), [])
        elif current is not None:
            current.append(line)
    for lines in out.values():
        if lines and _RC_LINE.match(lines[-1].strip()):
            lines.pop()
    return {cmd: "\n".join(lines) for cmd, lines in out.items()}


def _missing(text: str | None) -> bool:
    """True when the output says the tool or file is not there."""
    if not text or not text.strip():
        return True
    low = text.lower()
    return (
        any(s in low for s in ("command not found", "no such file or directory", "not found"))
        and len(text.strip().splitlines()) <= 2
    )


# --------------------------------------------------------------------------- devices


@dataclass(frozen=True)
class Device:
    """One accelerator as any vendor tool reports it; memory in MiB."""

    vendor: str  # nvidia | rocm | cann
    index: int
    name: str
    memory_mib: int | None = None
    uuid: str | None = None
    bus_id: str | None = None
    persistence_mode: bool | None = None
    fabric_state: str | None = None  # NVIDIA: GPU registration with the NVLink fabric
    health: str | None = None  # Ascend: OK/Warning/Alarm/Critical/UNKNOWN
    extra: dict[str, str] = field(default_factory=dict, compare=False)


@dataclass(frozen=True)
class Accelerators:
    """What a vendor tool found: devices plus the driver stack versions."""

    vendor: str
    devices: tuple[Device, ...]
    driver_version: str | None = None
    cuda_version: str | None = None
    tool_version: str | None = None

    @property
    def count(self) -> int:
        return len(self.devices)

    @property
    def names(self) -> list[str]:
        """Distinct model names, in device order."""
        return list(dict.fromkeys(d.name for d in self.devices))


def _text(el: ET.Element | None, path: str) -> str | None:
    found = el.find(path) if el is not None else None
    value = found.text.strip() if found is not None and found.text else None
    return None if value in (None, "", "N/A") else value


def _mib(value: str | None) -> int | None:
    m = re.match(r"\s*(\d+)\s*MiB", value or "")
    return int(m.group(1)) if m else None


def parse_nvidia_smi_xml(text: str) -> Accelerators | None:
    """``nvidia-smi -q -x``: the one NVIDIA call that has everything we check."""
    start = text.find("<?xml")
    if start < 0:
        return None
    body = text[start : text.rfind("</nvidia_smi_log>") + len("</nvidia_smi_log>")]
    # The DOCTYPE names an external DTD the parser must not fetch or need.
    body = re.sub(r"<!DOCTYPE[^>]*>", "", body, count=1)
    try:
        root = ET.fromstring(body)
    except ET.ParseError:
        return None
    devices = []
    for i, gpu in enumerate(root.findall("gpu")):
        persistence = _text(gpu, "persistence_mode")
        devices.append(
            Device(
                vendor="nvidia",
                index=int(_text(gpu, "minor_number") or i),
                name=_text(gpu, "product_name") or "unknown",
                memory_mib=_mib(_text(gpu, "fb_memory_usage/total")),
                uuid=_text(gpu, "uuid"),
                bus_id=_text(gpu, "pci/pci_bus_id") or gpu.get("id"),
                persistence_mode=None if persistence is None else persistence == "Enabled",
                fabric_state=_text(gpu, "fabric/state"),
                extra={
                    k: v
                    for k, v in (
                        ("architecture", _text(gpu, "product_architecture")),
                        ("vbios", _text(gpu, "vbios_version")),
                        ("serial", _text(gpu, "serial")),
                    )
                    if v
                },
            )
        )
    return Accelerators(
        vendor="nvidia",
        devices=tuple(devices),
        driver_version=_text(root, "driver_version"),
        cuda_version=_text(root, "cuda_version"),
    )


def parse_nvidia_smi_query(text: str) -> list[Device]:
    """``nvidia-smi --query-gpu=...,memory.total,... --format=csv`` with its header."""
    lines = [ln for ln in text.splitlines() if ln.strip() and not ln.startswith(("$ ", "[rc="))]
    if not lines or "," not in lines[0]:
        return []
    header = [h.strip().split(" [")[0] for h in lines[0].split(",")]
    devices = []
    for line in lines[1:]:
        row = dict(zip(header, (c.strip() for c in line.split(",")), strict=False))
        if not row.get("index", "").isdigit():
            continue
        devices.append(
            Device(
                vendor="nvidia",
                index=int(row["index"]),
                name=row.get("name", "unknown"),
                memory_mib=_mib(row.get("memory.total")),
                uuid=row.get("uuid"),
                bus_id=row.get("pci.bus_id"),
                extra={k: row[k] for k in ("driver_version", "compute_cap") if k in row},
            )
        )
    return devices


_LIST_LINE = re.compile(r"^GPU (\d+): (.+?) \(UUID: (GPU-[0-9a-f-]+)\)$")


def parse_nvidia_smi_list(text: str) -> list[tuple[int, str, str]]:
    """``nvidia-smi -L``: ``[(index, name, uuid)]``."""
    out = []
    for line in text.splitlines():
        m = _LIST_LINE.match(line.strip())
        if m:
            out.append((int(m.group(1)), m.group(2), m.group(3)))
    return out


def parse_nvidia_smi_banner(text: str) -> dict[str, str]:
    """Plain ``nvidia-smi``: driver and CUDA versions from its header box."""
    out = {}
    for key, label in (("driver_version", "Driver Version"), ("cuda_version", "CUDA Version")):
        m = re.search(rf"{label}:\s*([0-9.]+)", text)
        if m:
            out[key] = m.group(1)
    return out


def parse_nvlink_status(text: str) -> dict[int, list[float]]:
    """``nvidia-smi nvlink -s``: per GPU index, the speed of each active link in GB/s."""
    out: dict[int, list[float]] = {}
    gpu = None
    for line in text.splitlines():
        m = re.match(r"^GPU (\d+):", line)
        if m:
            gpu = int(m.group(1))
            out[gpu] = []
            continue
        m = re.match(r"^\s*Link \d+: ([0-9.]+) GB/s", line)
        if m and gpu is not None:
            out[gpu].append(float(m.group(1)))
    return out


# --------------------------------------------------------------------------- topology


@dataclass(frozen=True)
class Topology:
    """``nvidia-smi topo -m`` reduced to what placement decisions need."""

    gpus: tuple[str, ...]
    links: dict[tuple[str, str], str]  # (GPU0, GPU1) -> "NV18" | "SYS" | "PIX" ...
    cpu_affinity: dict[str, str]
    numa_affinity: dict[str, str]

    @property
    def all_nvlink(self) -> bool:
        """Every GPU pair is connected by NVLink (directly or through NVSwitch)."""
        return bool(self.links) and all(v.startswith("NV") for v in self.links.values())

    @property
    def min_nvlinks(self) -> int | None:
        counts = [int(v[2:]) for v in self.links.values() if re.fullmatch(r"NV\d+", v)]
        return min(counts) if counts else None

    def summary(self) -> str:
        if len(self.gpus) < 2:
            return f"{len(self.gpus)} GPU, no peers"
        if self.all_nvlink:
            return f"NVLink between all {len(self.gpus)} GPUs (>= {self.min_nvlinks} links a pair)"
        kinds = sorted(set(self.links.values()))
        return f"mixed links between {len(self.gpus)} GPUs: {', '.join(kinds)}"


def parse_topo_matrix(text: str) -> Topology | None:
    """The matrix part of ``nvidia-smi topo -m`` (the header is underlined with ANSI codes)."""
    lines = [_ANSI.sub("", ln) for ln in text.splitlines()]
    header_idx = next(
        (i for i, ln in enumerate(lines) if ln.strip().startswith("GPU0") and "\t" in ln), None
    )
    if header_idx is None:
        return None
    header = [c.strip() for c in lines[header_idx].split("\t") if c.strip()]
    gpus = tuple(h for h in header if re.fullmatch(r"GPU\d+", h))
    links: dict[tuple[str, str], str] = {}
    cpu_aff: dict[str, str] = {}
    numa_aff: dict[str, str] = {}
    for line in lines[header_idx + 1 :]:
        cells = [c.strip() for c in line.split("\t")]
        if not cells or not re.fullmatch(r"GPU\d+", cells[0]):
            if cells and cells[0] == "" and not line.strip():
                break
            continue
        name, values = cells[0], cells[1:]
        for peer, value in zip(gpus, values, strict=False):
            if peer != name and value != "X":
                links[(name, peer)] = value
        rest = values[len(gpus) :]
        if rest:
            cpu_aff[name] = rest[0]
        if len(rest) > 1:
            numa_aff[name] = rest[1]
    return Topology(gpus, links, cpu_aff, numa_aff)


# --------------------------------------------------------------------------- AMD / Ascend


def _size_mib(size: object) -> int | None:
    """amd-smi sizes are ``{"value": N, "unit": "MB"|"B"|"GB"}`` (or "N MB" strings)."""
    if isinstance(size, dict):
        value, unit = size.get("value"), str(size.get("unit", "MB"))
    elif isinstance(size, str) and size.split():
        value, unit = size.split()[0], (size.split() + ["MB"])[1]
    else:
        return None
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    factor = {"B": 1 / 2**20, "KB": 1 / 1024, "MB": 1, "GB": 1024}.get(unit.upper(), 1)
    return int(number * factor)


def _json_after_banner(text: str, openers: str):
    """The JSON document in a tool's output, after any warning lines it printed first."""
    start = min((i for i in (text.find(c) for c in openers) if i >= 0), default=-1)
    if start < 0:
        return None
    try:
        return json.loads(text[start:])
    except ValueError:
        return None


def parse_amd_smi_static(text: str) -> Accelerators | None:
    """``amd-smi static --json``: a bare list (older) or ``{"gpu_data": [...]}`` (newer)."""
    data = _json_after_banner(text, "[{")
    if data is None:
        return None
    gpus = data.get("gpu_data", []) if isinstance(data, dict) else data
    if not isinstance(gpus, list):
        return None
    devices, drivers = [], []
    for i, gpu in enumerate(g for g in gpus if isinstance(g, dict)):
        asic, bus = gpu.get("asic") or {}, gpu.get("bus") or {}
        vram, driver = gpu.get("vram") or {}, gpu.get("driver") or {}
        if isinstance(driver, dict) and driver.get("version"):
            drivers.append(str(driver["version"]))
        devices.append(
            Device(
                vendor="rocm",
                index=int(gpu.get("gpu", i)),
                name=str(asic.get("market_name") or "unknown"),
                memory_mib=_size_mib(vram.get("size")) if isinstance(vram, dict) else None,
                bus_id=bus.get("bdf"),
                extra={
                    k: str(asic[k]) for k in ("device_id", "target_graphics_version") if k in asic
                },
            )
        )
    return Accelerators("rocm", tuple(devices), driver_version=drivers[0] if drivers else None)


def parse_rocm_smi_productname(text: str) -> Accelerators | None:
    """``rocm-smi --showproductname --json``: ``{"card0": {"Card Series": ...}}``."""
    data = _json_after_banner(text, "{")
    if not isinstance(data, dict):
        return None
    devices = []
    for key in sorted((k for k in data if k.startswith("card")), key=lambda k: int(k[4:] or 0)):
        card = {k.lower(): v for k, v in data[key].items()}
        devices.append(
            Device(
                vendor="rocm",
                index=int(key[4:] or 0),
                name=str(card.get("card series") or card.get("card model") or "unknown"),
                extra={
                    k: str(card[k]) for k in ("card model", "card sku", "gfx version") if k in card
                },
            )
        )
    return Accelerators("rocm", tuple(devices))


_NPU_HEALTH = {"OK", "Warning", "Alarm", "Critical", "UNKNOWN"}


def parse_npu_smi_info(text: str) -> Accelerators | None:
    """``npu-smi info``: two table lines per chip (NPU/name/health, then chip/phy/bus/memory).

    On Atlas A3 each card shows two chips with a Phy-ID column; the device
    index used by the engines is the Phy-ID (0..15), so that becomes ``index``.
    """
    m = re.search(r"npu-smi\s+(\S+)\s+Version:\s*(\S+)", text)
    devices = []
    pending: tuple[int, str, str] | None = None
    for line in text.splitlines():
        if "Process id" in line:
            break
        if not line.startswith("|"):
            continue
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) < 3:
            continue
        first = cells[0].split()
        if len(first) >= 2 and first[0].isdigit() and cells[1] in _NPU_HEALTH:
            pending = (int(first[0]), first[1], cells[1])
            continue
        if pending and first and first[0].isdigit():
            npu, name, health = pending
            pairs = re.findall(r"(\d+)\s*/\s*(\d+)", cells[2])
            used, total = (int(pairs[-1][0]), int(pairs[-1][1])) if pairs else (None, None)
            phy = int(first[1]) if len(first) > 1 and first[1].isdigit() else None
            devices.append(
                Device(
                    vendor="cann",
                    index=phy if phy is not None else npu,
                    name=name,
                    memory_mib=total,
                    bus_id=None if cells[1] in ("", "NA") else cells[1],
                    health=health,
                    extra={
                        "npu": str(npu),
                        "chip": first[0],
                        **({"hbm_used_mb": str(used)} if used is not None else {}),
                    },
                )
            )
            pending = None
    if not devices and not m:
        return None
    return Accelerators(
        "cann",
        tuple(devices),
        driver_version=m.group(2) if m else None,
        tool_version=m.group(1) if m else None,
    )


# --------------------------------------------------------------------------- fabric manager


@dataclass(frozen=True)
class FabricManager:
    """``systemctl is-active nvidia-fabricmanager`` and ``nv-fabricmanager --version``."""

    state: str | None  # active | inactive | failed | ... ; None: systemd or unit absent
    version: str | None  # None: not installed


def parse_fm_version(text: str) -> str | None:
    """``Fabric Manager version is : 535.161.08`` -> ``535.161.08``."""
    m = re.search(r"Fabric Manager version is\s*:?\s*([0-9][0-9.]*)", text or "")
    return m.group(1) if m else None


def parse_systemctl_is_active(text: str) -> str | None:
    """First word of ``systemctl is-active UNIT``; None when systemctl itself is missing."""
    if _missing(text):
        return None
    word = text.strip().splitlines()[0].strip()
    return word if re.fullmatch(r"[a-z-]+", word) else None


def parse_fabric_manager(is_active: str, version: str) -> FabricManager:
    return FabricManager(parse_systemctl_is_active(is_active), parse_fm_version(version))


# --------------------------------------------------------------------------- OS and tuning


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
    if _missing(text) or "cannot access" in text or "No such file" in text:
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


# --------------------------------------------------------------------------- the whole host


SCHED_DEBUGFS = "/sys/kernel/debug/sched/migration_cost_ns"
SYSCTLS = ("vm.swappiness", "kernel.numa_balancing", "kernel.sched_migration_cost_ns")


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


# --------------------------------------------------------------------------- tuning state

CPUFREQ_GLOB = "/sys/devices/system/cpu/cpu[0-9]*/cpufreq/scaling_governor"
CPU0_CPUFREQ = "/sys/devices/system/cpu/cpu0/cpufreq"
LOCKDOWN = "/sys/kernel/security/lockdown"
_SYSCTL_KEY = re.compile(r"^[A-Za-z0-9_.-]+$")


@dataclass(frozen=True)
class TuningState:
    """What the tuning role must know before it writes anything; one round trip.

    ``sysctl`` holds only the keys that exist under /proc/sys (value "" when a
    key exists but cannot be read), ``writable`` those a write would reach:
    a container's read-only /proc/sys and a missing key look different to
    the planner, and both differ from "already set".
    """

    kernel: str | None = None
    container: str | None = None  # systemd-detect-virt --container; None on the host itself
    proc_sys_writable: bool = False
    sysctl: dict[str, str] = field(default_factory=dict)
    writable: frozenset[str] = frozenset()
    sched_debugfs_exists: bool = False
    sched_debugfs_writable: bool = False
    sched_debugfs: str | None = None  # its value; None when unreadable (lockdown, no debugfs)
    lockdown: str | None = None  # none | integrity | confidentiality
    cpufreq_driver: str | None = None
    governors: tuple[str, ...] = ()  # distinct current governors over all CPUs; () = no cpufreq
    available_governors: tuple[str, ...] = ()
    cpufreq_writable: bool = False
    unit_present: bool = False
    unit_active: str | None = None


def sysctl_path(key: str) -> str:
    """``vm.swappiness`` -> ``/proc/sys/vm/swappiness``."""
    return "/proc/sys/" + key.replace(".", "/")


def tuning_commands(keys: list[str] | tuple[str, ...], unit: str) -> dict[str, str]:
    """Commands of the tuning fact, by section name (framed like ``BASICS_COMMANDS``).

    Keys are read from /proc/sys directly rather than with ``sysctl`` so that a
    missing key is simply absent and writability is tested per key (``test -w``
    is false on a read-only bind mount, even for root).
    """
    bad = [k for k in keys if not _SYSCTL_KEY.match(k)]
    if bad:
        raise ValueError(f"not sysctl keys: {', '.join(bad)}")
    probe = " ".join(keys)
    return {
        "kernel": "uname -r",
        "container": "systemd-detect-virt --container",
        "proc_sys_writable": "test -w /proc/sys/vm/swappiness && echo yes",
        "sysctl": (
            f'for k in {probe}; do p=/proc/sys/$(printf %s "$k" | tr . /); '
            'if [ -e "$p" ]; then w=ro; [ -w "$p" ] && w=rw; '
            "v=$(cat \"$p\" 2>/dev/null | tr '\\t\\n' '  '); "
            'printf \'%s\\t%s\\t%s\\n\' "$k" "$w" "$v"; '
            "fi; done"
        ),
        "debugfs": (
            f"p={SCHED_DEBUGFS}; if [ -e $p ]; then echo exists; [ -w $p ] && echo writable; "
            'echo "value $(cat $p 2>/dev/null)"; fi'
        ),
        "lockdown": f"cat {LOCKDOWN}",
        "cpufreq_driver": f"cat {CPU0_CPUFREQ}/scaling_driver",
        "governors": f"cat {CPUFREQ_GLOB} | sort -u",
        "available_governors": f"cat {CPU0_CPUFREQ}/scaling_available_governors",
        "cpufreq_writable": f"test -w {CPU0_CPUFREQ}/scaling_governor && echo yes",
        "unit": f"test -e /etc/systemd/system/{unit} && echo present; systemctl is-active {unit}",
    }


def parse_tuning(sections: dict[str, str]) -> TuningState:
    """The tuning fact's framed output -> ``TuningState``; missing sections mean absent."""
    sysctl: dict[str, str] = {}
    writable: set[str] = set()
    for line in sections.get("sysctl", "").splitlines():
        key, _, rest = line.partition("\t")
        mode, _, value = rest.partition("\t")
        if not _SYSCTL_KEY.match(key) or mode not in ("rw", "ro"):
            continue
        sysctl[key] = " ".join(value.split())
        if mode == "rw":
            writable.add(key)
    debugfs = sections.get("debugfs", "").splitlines()
    value = next((ln[6:] for ln in debugfs if ln.startswith("value ")), "")
    lockdown = re.search(r"\[(\w+)\]", sections.get("lockdown", ""))
    container = sections.get("container", "").strip().splitlines()
    unit = sections.get("unit", "").split()
    return TuningState(
        kernel=parse_kernel(sections.get("kernel", "")),
        container=container[0] if container and container[0] not in ("none", "") else None,
        proc_sys_writable="yes" in sections.get("proc_sys_writable", ""),
        sysctl=sysctl,
        writable=frozenset(writable),
        sched_debugfs_exists="exists" in debugfs,
        sched_debugfs_writable="writable" in debugfs,
        sched_debugfs=parse_debugfs_value(value),
        lockdown=lockdown.group(1) if lockdown else None,
        cpufreq_driver=parse_cpufreq_value(sections.get("cpufreq_driver", "")),
        governors=tuple(sections.get("governors", "").split()),
        available_governors=tuple(sections.get("available_governors", "").split()),
        cpufreq_writable="yes" in sections.get("cpufreq_writable", ""),
        unit_present="present" in unit,
        unit_active=next((w for w in unit if w != "present"), None),
    )
