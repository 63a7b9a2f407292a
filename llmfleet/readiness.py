"""Is this host what the inventory says it is, and can it serve the recipe?

Pure: takes parsed ``HostFacts`` (see ``hostfacts/``), the inventory's
hardware profile and optional recipe, and returns report rows plus
``Problem``s naming host, field and fix.  The first day on a new bare-metal
fleet is where "the inventory says h200 but it is an H100 box", a fabric
manager one patch release behind the driver, or a 200 GB root disk for 410 GB
of weights cost hours; each of those is one row here, found before any
package is installed.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .catalog import Catalog, CatalogError, Hardware
from .errors import Problem
from .hostfacts.devices import DEVICE_TOOLS, Accelerators
from .hostfacts.system import SCHED_DEBUGFS, HostFacts, kernel_at_least
from .hostpaths import DEFAULT_HF_HOME
from .validate import plan_host

SUPPORTED_OS = {("debian", "12"), ("ubuntu", "22.04"), ("ubuntu", "24.04")}
DISK_HEADROOM = 1.1  # weights plus caches, partial files and a second revision's overlap


@dataclass(frozen=True)
class Row:
    check: str
    status: str  # ok | warn | fail | info
    detail: str


@dataclass
class Readiness:
    host: str
    rows: list[Row] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    detected: str | None = None  # hardware profile the devices match
    recipes: list[str] = field(default_factory=list)  # recipes for the detected profile that fit

    @property
    def ok(self) -> bool:
        return not any(p.severity == "error" for p in self.problems)

    def _add(self, check: str, status: str, detail: str, fix: str = "") -> None:
        self.rows.append(Row(check, status, detail))
        if status in ("fail", "warn"):
            severity = "error" if status == "fail" else "warning"
            self.problems.append(Problem(self.host, check, detail, fix, severity))


def profile_for(catalog: Catalog, device_name: str) -> str | None:
    """Hardware profile whose name pattern matches a device model name.

    The longest matching pattern wins, so "NVIDIA GB200" is gb200 and not
    b200 although it contains "B200"; matching ignores case because rocm-smi
    prints "AMD INSTINCT ..." where amd-smi prints "AMD Instinct ...".
    """
    name = device_name.upper()
    best: tuple[int, str] | None = None
    for hw in catalog.hardware.values():
        for pattern in hw.gpu_name_patterns:
            if pattern.upper() in name and (best is None or len(pattern) > best[0]):
                best = (len(pattern), hw.id)
    return best[1] if best else None


def detect(catalog: Catalog, acc: Accelerators | None) -> str | None:
    """The one hardware profile all the devices match; None for no devices, no match,
    or devices of several profiles."""
    if acc is None or not acc.count:
        return None
    found = {profile_for(catalog, name) for name in acc.names}
    return found.pop() if len(found) == 1 else None


def _found(acc: Accelerators) -> str:
    return f"{acc.count} x {' + '.join(acc.names)}"


def _undeclared(r: Readiness, catalog: Catalog, facts: HostFacts) -> None:
    """No hardware in the inventory: the devices found name the profile to set."""
    acc = facts.accelerators
    if acc is None or not acc.count:
        cpu = [hw.id for hw in catalog.hardware.values() if hw.vendor == "none"]
        r._add(
            "hardware",
            "fail",
            f"no hardware set, and no devices found ({', '.join(DEVICE_TOOLS.values())} "
            "missing or listed none)",
            "install the accelerator driver (reboot after it)"
            + "".join(f", or set hardware={c} for a host without accelerators" for c in cpu),
        )
        return
    r.detected = detect(catalog, acc)
    if r.detected:
        r._add(
            "hardware",
            "fail",
            f"no hardware set; the devices match profile {r.detected} ({_found(acc)})",
            f"set hardware={r.detected}",
        )
    else:
        r._add(
            "hardware",
            "fail",
            f"no hardware set, and the devices ({_found(acc)}) match no single profile",
            "set hardware to the profile of this machine (files/hardware/)",
        )


def _os(r: Readiness, facts: HostFacts) -> None:
    os_ = facts.os
    if os_ is None:
        r._add("os", "fail", "no /etc/os-release", "install Debian 12 or Ubuntu 22.04/24.04")
        return
    if (os_.id, os_.version_id) in SUPPORTED_OS:
        r._add("os", "ok", f"{os_.pretty_name}, kernel {facts.kernel or '?'}")
    else:
        r._add(
            "os",
            "fail",
            f"{os_.pretty_name} ({os_.id} {os_.version_id}) is not supported",
            "reinstall with Debian 12, Ubuntu 22.04 or Ubuntu 24.04",
        )


def _devices(r: Readiness, catalog: Catalog, facts: HostFacts, hw: Hardware) -> None:
    acc = facts.accelerators
    if hw.vendor == "none":
        r.detected = hw.id if acc is None or not acc.count else None
        detail = "none expected (CPU profile)"
        r._add("devices", "ok", detail if acc is None else f"{acc.count} found; {detail}")
        return
    if acc is None or not acc.count:
        tool = DEVICE_TOOLS[hw.vendor]
        r._add(
            "devices",
            "fail",
            f"no {hw.vendor} devices found ({tool} missing or listed none)",
            "install the driver (reboot after it) or check that this is the right host",
        )
        return
    r.detected = detect(catalog, acc)
    found = _found(acc)
    if r.detected != hw.id:
        what = f"profile {r.detected}" if r.detected else "no known profile"
        r._add(
            "hardware",
            "fail",
            f"inventory says {hw.id} but the host has {found} ({what})",
            f"set hardware: {r.detected} for this host in the inventory"
            if r.detected
            else "check that the inventory points at the right machine",
        )
    else:
        r._add("hardware", "ok", f"{found} matches {hw.id}")
    if acc.count < hw.devices_per_host:
        r._add(
            "device count",
            "fail",
            f"{acc.count} devices, profile {hw.id} expects {hw.devices_per_host}",
            "check for missing or failed devices, or use a recipe with fewer per node",
        )
    elif acc.count > hw.devices_per_host:
        r._add("device count", "warn", f"{acc.count} devices, {hw.id} uses {hw.devices_per_host}")
    else:
        r._add("device count", "ok", f"{acc.count}")
    mems = {d.memory_mib for d in acc.devices if d.memory_mib}
    if mems:
        gb = min(mems) * 2**20 / 1e9
        status = "ok" if gb >= 0.9 * hw.device_memory_gb else "warn"
        r._add(
            "device memory",
            status,
            f"{min(mems)} MiB ({gb:.0f} GB) each; {hw.id} profile {hw.device_memory_gb:g} GB",
        )
    versions = ", ".join(
        f"{k} {v}" for k, v in (("driver", acc.driver_version), ("CUDA", acc.cuda_version)) if v
    )
    r._add("driver", "ok" if acc.driver_version else "warn", versions or "version unknown")
    off = [str(d.index) for d in acc.devices if d.persistence_mode is False]
    if off:
        r._add(
            "persistence mode",
            "warn",
            f"off on GPU {', '.join(off)}",
            "nvidia-smi -pm 1, or enable nvidia-persistenced",
        )
    elif any(d.persistence_mode for d in acc.devices):
        r._add("persistence mode", "ok", "on")
    unhealthy = [f"{d.index}:{d.health}" for d in acc.devices if d.health not in (None, "OK")]
    if unhealthy:
        r._add("device health", "fail", ", ".join(unhealthy), "npu-smi info -t health -i ID")


def _fabric(r: Readiness, facts: HostFacts, hw: Hardware) -> None:
    acc, topo = facts.accelerators, facts.topology
    if topo is not None and len(topo.gpus) > 1:
        status = "ok" if topo.all_nvlink or not hw.nvswitch else "warn"
        r._add("topology", status, topo.summary())
    if not hw.nvswitch or acc is None or acc.vendor != "nvidia":
        return
    fm = facts.fabric_manager
    driver = acc.driver_version
    registered = bool(acc.devices) and all(d.fabric_state == "Completed" for d in acc.devices)
    fix = f"install nvidia-fabricmanager of exactly {driver}, hold both (apt-mark hold)"
    if fm is None or fm.version is None:
        if registered:
            r._add(
                "fabric manager",
                "warn",
                "not installed here, but every GPU's fabric state is Completed "
                "(managed outside this machine, e.g. by a VM's host)",
            )
        else:
            r._add("fabric manager", "fail", f"not installed on an NVSwitch host ({hw.id})", fix)
        return
    if driver and fm.version != driver:
        r._add(
            "fabric manager",
            "fail",
            f"version {fm.version} does not match driver {driver}",
            fix + "; reboot if the driver moved",
        )
    elif fm.state not in (None, "active"):
        r._add(
            "fabric manager",
            "fail",
            f"{fm.version} installed but {fm.state}",
            "systemctl enable --now nvidia-fabricmanager; journalctl -u nvidia-fabricmanager",
        )
    else:
        r._add("fabric manager", "ok", f"{fm.version} {fm.state or ''}".strip())


def _tuning(r: Readiness, facts: HostFacts, governor: str | None, sysctl: dict[str, str]) -> None:
    if facts.cpufreq_governor is None:
        r._add(
            "cpufreq",
            "warn",
            "no cpufreq interface (usual in VMs): governor cannot be set"
            + (f", recipe wants {governor}" if governor else ""),
        )
    elif governor and facts.cpufreq_governor != governor:
        r._add(
            "cpufreq",
            "warn",
            f"governor {facts.cpufreq_governor}, recipe wants {governor}",
            f"cpupower frequency-set -g {governor} from a oneshot unit",
        )
    else:
        driver = f"{facts.cpufreq_driver} " if facts.cpufreq_driver else ""
        r._add("cpufreq", "ok", f"{driver}{facts.cpufreq_governor}")
    for key, want in sorted(sysctl.items()):
        have = facts.sysctl.get(key)
        if key == "kernel.sched_migration_cost_ns" and have is None:
            continue  # reported below with the debugfs location
        if have is None:
            r._add(f"sysctl {key}", "warn", f"not present on this kernel; recipe wants {want}")
        elif have != want:
            r._add(
                f"sysctl {key}", "warn", f"{have}, recipe wants {want}", f"sysctl -w {key}={want}"
            )
    if "kernel.sched_migration_cost_ns" not in facts.sysctl:
        newer = kernel_at_least(facts.kernel, 5, 13)
        where = (
            f"{SCHED_DEBUGFS} = {facts.sched_migration_cost_debugfs}"
            if facts.sched_migration_cost_debugfs
            else f"{SCHED_DEBUGFS} not readable (debugfs unmounted or locked down)"
        )
        want = sysctl.get("kernel.sched_migration_cost_ns")
        r._add(
            "sched migration cost",
            "warn",
            f"kernel.sched_migration_cost_ns is no sysctl on kernel {facts.kernel or '?'}"
            f"{' (>= 5.13)' if newer else ''}; {where}"
            + (f"; recipe wants {want}" if want else ""),
            f"write it to {SCHED_DEBUGFS} from a oneshot unit" if want else "",
        )
    for key in ("vm.swappiness", "kernel.numa_balancing"):
        if key in facts.sysctl and key not in sysctl:
            r.rows.append(Row(f"sysctl {key}", "info", facts.sysctl[key]))


def _disk(r: Readiness, catalog: Catalog, facts: HostFacts, repo: str | None, path: str) -> None:
    free = min(facts.disk_free_gb.values()) if facts.disk_free_gb else None
    if free is None:
        r._add("disk", "warn", f"free space at {path} unknown (df printed nothing)")
        return
    weights = catalog.weights_gb(repo) if repo else None
    if weights is None:
        r._add("disk", "ok" if repo is None else "warn", f"{free:.1f} GB free at {path}")
        return
    need = weights * DISK_HEADROOM
    if free < need:
        r._add(
            "disk",
            "fail",
            f"{free:.1f} GB free at {path}, {repo} weights need ~{weights:g} GB "
            f"(+10% headroom: {need:.0f} GB)",
            "free space there, or set hf_home to a larger disk",
        )
    else:
        r._add("disk", "ok", f"{free:.1f} GB free at {path}, weights need ~{weights:g} GB")


def _fitting(r: Readiness, catalog: Catalog, facts: HostFacts) -> None:
    """Recipes for the detected profile that plan cleanly and fit this host's device count."""
    if r.detected is None:
        return
    count = facts.accelerators.count if facts.accelerators else 0
    free = min(facts.disk_free_gb.values()) if facts.disk_free_gb else None
    for rid, recipe in sorted(catalog.recipes.items()):
        if recipe.hardware != r.detected:
            continue
        data = {"hardware": r.detected, "recipe": rid, "master_addr": "x", "node_rank": 0}
        data["network_interface"] = "eth0"  # a site setting; any name lets the recipe plan
        plan = plan_host(catalog, r.host, data)
        if not plan.ok or plan.rendered is None:
            continue
        if count and r.detected != "cpu" and plan.rendered.parallel.per_node > count:
            continue
        weights = catalog.weights_gb(plan.rendered.model_repo)
        if free is not None and weights is not None and free < weights * DISK_HEADROOM:
            continue
        r.recipes.append(rid if recipe.nodes == 1 else f"{rid} ({recipe.nodes} nodes)")


def assess(
    catalog: Catalog,
    host: str,
    facts: HostFacts,
    hardware: str | None,
    recipe: str | None = None,
    hf_home: str = DEFAULT_HF_HOME,
) -> Readiness:
    """The readiness report of one host against its inventory entry."""
    r = Readiness(host)
    _os(r, facts)
    if facts.cpu is not None:
        numa = facts.cpu.numa
        r.rows.append(
            Row(
                "cpu",
                "info",
                f"{facts.cpu.cpus or '?'} CPUs, {len(numa) or '?'} NUMA node(s)"
                + (f", {facts.cpu.hypervisor} guest" if facts.cpu.hypervisor else "")
                + (f", {facts.memory_gb:.0f} GB RAM" if facts.memory_gb else ""),
            )
        )
    try:
        hw = catalog.hw(hardware) if hardware else None
        rec = catalog.recipe(recipe) if recipe else None
    except CatalogError as exc:
        r._add("recipe" if "recipe" in str(exc) else "hardware", "fail", str(exc))
        return r
    if hw is None:  # the host checks still run, and the devices name the profile to set
        _undeclared(r, catalog, facts)
    else:
        _devices(r, catalog, facts, hw)
        _fabric(r, facts, hw)
    _tuning(r, facts, rec.cpu_governor if rec else None, dict(rec.sysctl) if rec else {})
    _disk(r, catalog, facts, rec.model["repo"] if rec else None, hf_home)
    _fitting(r, catalog, facts)
    return r
