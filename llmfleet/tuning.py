"""Host tuning for LLM serving, planned from facts: sysctls, scheduler migration cost, governor.

Pure: takes what the host said (``hostfacts.tuning.TuningState``) and what the
recipe wants, and returns the file contents, unit text and findings the role
applies.  Every knob ends up ``applied``, ``skipped`` (it exists but we must
not or cannot write it here) or ``unsupported`` (this kernel or machine does
not have it), with the reason, because on a new fleet "why is swappiness
still 60 on host 7" costs more time than setting it.

Three traps shape the plan (see shared/FIELD-NOTES.md, "Host tuning"):

- ``kernel.sched_migration_cost_ns`` left the sysctl table in kernel 5.13;
  it lives at ``/sys/kernel/debug/sched/migration_cost_ns`` since, which
  only a process can write (at boot: a oneshot unit), and kernel lockdown
  can refuse it.
- VMs usually have no cpufreq at all, and some distributions reset the
  governor at boot: a oneshot unit writes it every boot.
- vm.*, kernel.numa_balancing, the scheduler and cpufreq are kernel-global.
  From inside a container with a writable /proc/sys they retune the machine
  that hosts it, for everyone; those are skipped there unless the site says
  so (host data ``tuning_in_container: true``).
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field

from .errors import Problem
from .hostfacts.system import SCHED_DEBUGFS, kernel_at_least
from .hostfacts.tuning import TuningState
from .hostpaths import SYSCTL_CONF, TUNING_UNIT, systemd_unit_file
from .unitfile import jinja_env

BASELINE_SYSCTL = {
    "vm.swappiness": "0",
    "kernel.numa_balancing": "0",
    "kernel.sched_migration_cost_ns": "50000",
}
BASELINE_GOVERNOR = "performance"
SCHED_KEY = "kernel.sched_migration_cost_ns"
GOVERNOR = "cpu governor"
UNIT_NAME = TUNING_UNIT
UNIT_FILE = systemd_unit_file(UNIT_NAME)
GOVERNOR_FILES = "/sys/devices/system/cpu/cpu[0-9]*/cpufreq/scaling_governor"

# Sysctls a container has its own copy of (network, IPC, UTS, user namespaces): safe anywhere.
NAMESPACED = ("net.", "user.", "fs.mqueue.", "kernel.shm", "kernel.msg", "kernel.sem")
NAMESPACED_KEYS = {"kernel.hostname", "kernel.domainname"}

APPLIED, SKIPPED, UNSUPPORTED = "applied", "skipped", "unsupported"


@dataclass(frozen=True)
class Wanted:
    """The merged tuning: baseline, then the recipe's own values on top (the recipe wins)."""

    sysctl: dict[str, str]
    governor: str
    source: str  # "baseline" or "baseline + recipe ID", for the file header

    @classmethod
    def merge(
        cls,
        recipe_sysctl: dict[str, str] | None = None,
        recipe_governor: str | None = None,
        recipe_id: str | None = None,
    ) -> Wanted:
        sysctl = {**BASELINE_SYSCTL, **{k: str(v) for k, v in (recipe_sysctl or {}).items()}}
        return cls(
            sysctl=sysctl,
            governor=recipe_governor or BASELINE_GOVERNOR,
            source=f"baseline + recipe {recipe_id}" if recipe_id else "baseline (no recipe)",
        )


@dataclass(frozen=True)
class Finding:
    """One knob's outcome, as the summary table shows it."""

    setting: str
    wanted: str
    now: str  # what the host had before this run; "-" when the knob is absent
    status: str  # applied | skipped | unsupported
    reason: str
    fix: str = ""
    how: str = ""  # sysctl.d | debugfs | unit: where an applied value is made to stick


@dataclass
class TuningPlan:
    """Everything the role does on one host, decided before it touches anything."""

    host: str
    wanted: Wanted
    sysctl_conf: str | None  # content of SYSCTL_CONF; None: no such file should exist
    apply_command: str | None  # applies the file's values now; None: nothing may be written
    sysctl_drift: bool  # a live value differs from the file: apply even if the file is unchanged
    governor: str | None  # written by the unit at every boot
    debugfs_value: str | None  # migration_cost_ns written by the unit at every boot
    unit_drift: bool  # a live value differs from what the unit writes: restart it
    findings: list[Finding] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)

    @property
    def needs_unit(self) -> bool:
        return self.governor is not None or self.debugfs_value is not None

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "error"]


def host_global(key: str) -> bool:
    """True for sysctls a container shares with its host (not namespaced)."""
    return key not in NAMESPACED_KEYS and not key.startswith(NAMESPACED)


def _same(a: str | None, b: str) -> bool:
    return a is not None and a.split() == b.split()


def _container_skip(container: str) -> tuple[str, str]:
    return (
        f"kernel-global, and this is a {container} container: writing it would retune "
        "the machine that hosts it",
        "set it on the container's host, or set tuning_in_container: true to apply it from here",
    )


def _sysctl_findings(
    facts: TuningState, wanted: Wanted, allow_container: bool
) -> tuple[dict[str, str], list[str], list[Finding]]:
    """(keys for the file, keys that may be written now, findings) for every wanted sysctl."""
    conf: dict[str, str] = {}
    writable: list[str] = []
    findings: list[Finding] = []
    kernel = facts.kernel or "?"
    for key, want in sorted(wanted.sysctl.items()):
        now = facts.sysctl.get(key)
        if not re.fullmatch(r"[A-Za-z0-9_.-]+", key) or "\n" in want:
            findings.append(
                Finding(key, want, "-", UNSUPPORTED, "not a sysctl setting", "fix it in the recipe")
            )
            continue
        if now is None:
            if key == SCHED_KEY:
                continue  # its debugfs home is planned separately
            findings.append(
                Finding(
                    key,
                    want,
                    "-",
                    UNSUPPORTED,
                    f"no {key} sysctl on kernel {kernel}",
                    "nothing to set on this kernel (a kernel built with it would have it)",
                )
            )
            continue
        how = "sysctl.d"
        if facts.container and not allow_container and host_global(key):
            reason, fix = _container_skip(facts.container)
            findings.append(Finding(key, want, now, SKIPPED, reason, fix))
            continue
        conf[key] = want
        if key not in facts.writable:
            where = (
                "/proc/sys is read-only here"
                if not facts.proc_sys_writable
                else f"{key} is not writable here"
            )
            findings.append(
                Finding(
                    key,
                    want,
                    now,
                    SKIPPED,
                    f"{where}: written to {SYSCTL_CONF} for the next boot, not applied",
                    "run on the host itself, or give the container a writable /proc/sys",
                    how,
                )
            )
            continue
        writable.append(key)
        reason = "already set" if _same(now, want) else f"set now (was {now}) and at every boot"
        findings.append(Finding(key, want, now, APPLIED, f"{reason} ({SYSCTL_CONF})", "", how))
    return conf, writable, findings


def _sched_debugfs(facts: TuningState, want: str, allow_container: bool) -> tuple[bool, Finding]:
    """(write it from the unit?, finding) for the migration cost when it is no sysctl."""
    kernel = facts.kernel or "?"
    now = facts.sched_debugfs or "-"
    setting = f"{SCHED_KEY} (debugfs)"
    newer = kernel_at_least(facts.kernel, 5, 13)
    if not re.fullmatch(r"\d+", want):
        return False, Finding(
            setting, want, now, UNSUPPORTED, "not a number of nanoseconds", "fix it in the recipe"
        )
    if not facts.sched_debugfs_exists:
        if newer is False:
            return False, Finding(
                SCHED_KEY,
                want,
                "-",
                UNSUPPORTED,
                f"kernel {kernel} has neither the sysctl nor {SCHED_DEBUGFS} "
                "(built without CONFIG_SCHED_DEBUG?)",
                "nothing to set on this kernel",
            )
        return False, Finding(
            setting,
            want,
            "-",
            UNSUPPORTED,
            f"kernel {kernel} moved it to {SCHED_DEBUGFS}, which is absent "
            "(debugfs not mounted, or a kernel without CONFIG_SCHED_DEBUG)",
            "mount debugfs at boot (systemd's sys-kernel-debug.mount) and run again",
        )
    if facts.container and not allow_container:
        reason, fix = _container_skip(facts.container)
        return False, Finding(setting, want, now, SKIPPED, reason, fix)
    if facts.sched_debugfs is None or not facts.sched_debugfs_writable:
        locked = facts.lockdown not in (None, "none")
        why = (
            f"kernel lockdown ({facts.lockdown}) refuses debugfs"
            if locked
            else f"{SCHED_DEBUGFS} is not readable and writable here"
        )
        return False, Finding(
            setting,
            want,
            now,
            UNSUPPORTED,
            why,
            "boot without lockdown (Secure Boot off, lockdown=none) to set it, or accept "
            "the kernel default",
        )
    reason = "already set" if _same(facts.sched_debugfs, want) else f"set now (was {now})"
    return True, Finding(setting, want, now, APPLIED, f"{reason}; at every boot by {UNIT_NAME}")


def _governor(facts: TuningState, want: str, allow_container: bool) -> tuple[bool, Finding]:
    """(write it from the unit?, finding) for the CPU frequency governor."""
    now = ",".join(facts.governors) or "-"
    driver = facts.cpufreq_driver or "cpufreq"
    if not facts.governors:
        return False, Finding(
            GOVERNOR,
            want,
            "-",
            UNSUPPORTED,
            "no cpufreq (usual in VMs: the hypervisor owns CPU frequency)",
            "nothing to do in a VM; on bare metal let the OS control P-states in the BIOS "
            "and load a cpufreq driver",
        )
    if not re.fullmatch(r"[a-z0-9_]+", want):
        return False, Finding(
            GOVERNOR, want, now, UNSUPPORTED, "not a governor name", "fix the recipe's cpu_governor"
        )
    if facts.available_governors and want not in facts.available_governors:
        offered = ", ".join(facts.available_governors)
        return False, Finding(
            GOVERNOR,
            want,
            now,
            UNSUPPORTED,
            f"{driver} offers only {offered}",
            "check the BIOS power profile and the cpufreq driver (kernel command line)",
        )
    if facts.container and not allow_container:
        reason, fix = _container_skip(facts.container)
        return False, Finding(GOVERNOR, want, now, SKIPPED, reason, fix)
    if not facts.cpufreq_writable:
        return False, Finding(
            GOVERNOR,
            want,
            now,
            SKIPPED,
            "/sys/devices/system/cpu is read-only here",
            "run on the host itself",
        )
    reason = "already set" if facts.governors == (want,) else f"set now (was {now})"
    return True, Finding(GOVERNOR, want, now, APPLIED, f"{reason}; at every boot by {UNIT_NAME}")


def sysctl_conf_text(conf: dict[str, str], source: str) -> str:
    """The sysctl.d file: a header that says who owns it, then ``key = value`` sorted."""
    lines = [
        "# Managed by llmfleet (host tuning): changes here are overwritten on the next deploy.",
        f"# {source}; only sysctls this kernel has are listed.",
        *(f"{k} = {v}" for k, v in sorted(conf.items())),
    ]
    return "\n".join(lines) + "\n"


def unit_text(plan: TuningPlan) -> str | None:
    """The oneshot unit that writes the governor and debugfs knob at boot; None when idle."""
    if not plan.needs_unit:
        return None
    return (
        jinja_env()
        .get_template("llmfleet-tuning.service.j2")
        .render(
            governor=plan.governor,
            governor_files=GOVERNOR_FILES,
            debugfs_path=SCHED_DEBUGFS,
            debugfs_value=plan.debugfs_value,
            source=plan.wanted.source,
        )
    )


def plan_tuning(
    host: str,
    facts: TuningState,
    wanted: Wanted,
    *,
    strict: bool = False,
    allow_container: bool = False,
) -> TuningPlan:
    """Decide every knob for one host; ``strict`` turns each knob not applied into an error."""
    conf, writable, findings = _sysctl_findings(facts, wanted, allow_container)
    debugfs_value = None
    sched_want = wanted.sysctl.get(SCHED_KEY)
    if sched_want is not None and SCHED_KEY not in facts.sysctl:
        use, finding = _sched_debugfs(facts, sched_want, allow_container)
        debugfs_value = sched_want if use else None
        findings.append(finding)
    use_gov, gov_finding = _governor(facts, wanted.governor, allow_container)
    findings.append(gov_finding)
    governor = wanted.governor if use_gov else None

    if writable and len(writable) == len(conf):
        apply = f"sysctl -q -p {SYSCTL_CONF}"
    elif writable:  # a partly writable /proc/sys: -p would fail on the others
        apply = "sysctl -q -w " + " ".join(shlex.quote(f"{k}={conf[k]}") for k in writable)
    else:
        apply = None
    drift = any(not _same(facts.sysctl.get(k), conf[k]) for k in writable)
    unit_drift = (governor is not None and facts.governors != (governor,)) or (
        debugfs_value is not None and not _same(facts.sched_debugfs, debugfs_value)
    )
    plan = TuningPlan(
        host=host,
        wanted=wanted,
        sysctl_conf=sysctl_conf_text(conf, wanted.source) if conf else None,
        apply_command=apply,
        sysctl_drift=drift,
        governor=governor,
        debugfs_value=debugfs_value,
        unit_drift=unit_drift,
        findings=findings,
    )
    for f in findings:
        if f.status != APPLIED:
            plan.problems.append(
                Problem(
                    host,
                    f"tuning {f.setting}",
                    f"{f.status}: {f.reason} (wanted {f.wanted})",
                    f.fix,
                    "error" if strict else "warning",
                )
            )
    return plan
