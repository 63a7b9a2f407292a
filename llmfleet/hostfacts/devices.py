"""Accelerators as their vendor tools report them: nvidia-smi (``-q -x`` and the
topology matrix), amd-smi/rocm-smi, npu-smi and the NVIDIA fabric manager."""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field

from .framing import absent

# the tool that lists each vendor's devices (AMD: amd-smi, or rocm-smi on older ROCm)
DEVICE_TOOLS = {"nvidia": "nvidia-smi", "rocm": "amd-smi/rocm-smi", "cann": "npu-smi"}
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


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
    if absent(text):
        return None
    word = text.strip().splitlines()[0].strip()
    return word if re.fullmatch(r"[a-z-]+", word) else None


def parse_fabric_manager(is_active: str, version: str) -> FabricManager:
    return FabricManager(parse_systemctl_is_active(is_active), parse_fm_version(version))
