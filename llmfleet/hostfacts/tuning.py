"""The tuning state: what the tuning role must know about sysctls, the scheduler
knob, cpufreq and its own unit before it writes anything (``tuning_commands``
runs in one round trip, ``parse_tuning`` reads it back)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from .system import SCHED_DEBUGFS, parse_cpufreq_value, parse_debugfs_value, parse_kernel

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
