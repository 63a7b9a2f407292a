"""Host tuning planner: every knob applied, skipped or unsupported, with the reason and a fix."""

from __future__ import annotations

import dataclasses

import pytest

from llmfleet import tuning as tn
from llmfleet.hostfacts.framing import split_sections
from llmfleet.hostfacts.tuning import TuningState, parse_tuning, tuning_commands
from llmfleet.validate import plan_onboard

BASE = tn.Wanted.merge()
DEBUGFS = "/sys/kernel/debug/sched/migration_cost_ns"
ALL_RW = frozenset({"vm.swappiness", "kernel.numa_balancing", "kernel.sched_migration_cost_ns"})

# Ubuntu 20.04 bare metal: the scheduler knob is still a sysctl, acpi-cpufreq governors.
OLD = TuningState(
    kernel="5.4.0-150-generic",
    proc_sys_writable=True,
    sysctl={
        "vm.swappiness": "60",
        "kernel.numa_balancing": "1",
        "kernel.sched_migration_cost_ns": "500000",
    },
    writable=ALL_RW,
    cpufreq_driver="acpi-cpufreq",
    governors=("ondemand",),
    available_governors=("conservative", "ondemand", "userspace", "powersave", "performance"),
    cpufreq_writable=True,
)
# Ubuntu 24.04 bare metal: the knob lives in debugfs.
NEW = TuningState(
    kernel="6.8.0-45-generic",
    proc_sys_writable=True,
    sysctl={"vm.swappiness": "60", "kernel.numa_balancing": "1"},
    writable=frozenset({"vm.swappiness", "kernel.numa_balancing"}),
    sched_debugfs_exists=True,
    sched_debugfs_writable=True,
    sched_debugfs="500000",
    lockdown="none",
    cpufreq_driver="intel_pstate",
    governors=("powersave",),
    available_governors=("performance", "powersave"),
    cpufreq_writable=True,
)
# A cloud VM: no cpufreq at all, debugfs mounted.
VM = dataclasses.replace(
    NEW, cpufreq_driver=None, governors=(), available_governors=(), cpufreq_writable=False
)


def _by_setting(plan: tn.TuningPlan) -> dict[str, tn.Finding]:
    return {f.setting: f for f in plan.findings}


def test_old_kernel_sets_migration_cost_as_a_sysctl() -> None:
    plan = tn.plan_tuning("gpu1", OLD, BASE)
    f = _by_setting(plan)
    assert f["kernel.sched_migration_cost_ns"].status == "applied"
    assert f["kernel.sched_migration_cost_ns"].how == "sysctl.d"
    assert "kernel.sched_migration_cost_ns = 50000" in plan.sysctl_conf
    assert plan.debugfs_value is None
    assert plan.apply_command == "sysctl -q -p /etc/sysctl.d/90-llmfleet.conf"
    assert plan.sysctl_drift
    assert not plan.problems


def test_sysctl_conf_content_is_exact() -> None:
    plan = tn.plan_tuning("gpu1", OLD, BASE)
    assert plan.sysctl_conf == (
        "# Managed by llmfleet (host tuning): changes here are overwritten on the next deploy.\n"
        "# baseline (no recipe); only sysctls this kernel has are listed.\n"
        "kernel.numa_balancing = 0\n"
        "kernel.sched_migration_cost_ns = 50000\n"
        "vm.swappiness = 0\n"
    )


def test_new_kernel_writes_migration_cost_to_debugfs_from_the_unit() -> None:
    plan = tn.plan_tuning("gpu1", NEW, BASE)
    f = _by_setting(plan)
    assert "sched_migration_cost" not in plan.sysctl_conf  # no such sysctl on 6.8
    assert plan.sysctl_conf.count(" = ") == 2
    sched = f["kernel.sched_migration_cost_ns (debugfs)"]
    assert (sched.status, sched.now, sched.wanted) == ("applied", "500000", "50000")
    assert tn.UNIT_NAME in sched.reason
    assert plan.debugfs_value == "50000"
    assert plan.unit_drift
    unit = tn.unit_text(plan)
    assert f"ExecStart=/bin/sh -c 'echo 50000 > {DEBUGFS}'" in unit
    assert "After=sys-kernel-debug.mount" in unit
    assert "Type=oneshot" in unit and "RemainAfterExit=yes" in unit
    assert "WantedBy=multi-user.target" in unit
    # systemd expands $NAME itself: the shell loop variable must be written $$g
    assert (
        "ExecStart=/bin/sh -c 'for g in /sys/devices/system/cpu/cpu[0-9]*/cpufreq/"
        'scaling_governor; do echo performance > "$$g"; done\'' in unit
    )


def test_new_kernel_without_debugfs_cannot_set_it() -> None:
    facts = dataclasses.replace(
        NEW, sched_debugfs_exists=False, sched_debugfs_writable=False, sched_debugfs=None
    )
    plan = tn.plan_tuning("gpu1", facts, BASE)
    sched = _by_setting(plan)["kernel.sched_migration_cost_ns (debugfs)"]
    assert sched.status == "unsupported"
    assert "kernel 6.8.0-45-generic moved it to" in sched.reason and "absent" in sched.reason
    assert "debugfs" in sched.fix
    assert plan.debugfs_value is None
    assert "echo 50000" not in tn.unit_text(plan)  # the unit still sets the governor


def test_lockdown_refuses_debugfs() -> None:
    facts = dataclasses.replace(
        NEW, sched_debugfs=None, sched_debugfs_writable=False, lockdown="integrity"
    )
    sched = _by_setting(tn.plan_tuning("gpu1", facts, BASE))[
        "kernel.sched_migration_cost_ns (debugfs)"
    ]
    assert sched.status == "unsupported"
    assert sched.reason == "kernel lockdown (integrity) refuses debugfs"


def test_old_kernel_without_the_sysctl_is_unsupported() -> None:
    facts = dataclasses.replace(
        OLD,
        sysctl={k: v for k, v in OLD.sysctl.items() if k != "kernel.sched_migration_cost_ns"},
    )
    sched = _by_setting(tn.plan_tuning("gpu1", facts, BASE))["kernel.sched_migration_cost_ns"]
    assert sched.status == "unsupported"
    assert "CONFIG_SCHED_DEBUG" in sched.reason


def test_read_only_proc_sys_writes_the_file_but_applies_nothing() -> None:
    facts = dataclasses.replace(OLD, proc_sys_writable=False, writable=frozenset())
    plan = tn.plan_tuning("ct1", facts, BASE)
    assert plan.sysctl_conf == tn.plan_tuning("ct1", OLD, BASE).sysctl_conf
    assert plan.apply_command is None
    assert not plan.sysctl_drift
    for key in ("vm.swappiness", "kernel.numa_balancing", "kernel.sched_migration_cost_ns"):
        f = _by_setting(plan)[key]
        assert f.status == "skipped"
        assert f.reason.startswith("/proc/sys is read-only here")
    assert all(p.severity == "warning" for p in plan.problems)


def test_partly_writable_proc_sys_writes_only_what_it_can() -> None:
    facts = dataclasses.replace(OLD, writable=frozenset({"vm.swappiness"}))
    plan = tn.plan_tuning("gpu1", facts, BASE)
    assert plan.apply_command == "sysctl -q -w vm.swappiness=0"
    assert _by_setting(plan)["kernel.numa_balancing"].reason.startswith(
        "kernel.numa_balancing is not writable here"
    )


def test_no_cpufreq_in_a_vm_is_reported() -> None:
    plan = tn.plan_tuning("vm1", VM, BASE)
    gov = _by_setting(plan)["cpu governor"]
    assert (gov.status, gov.now) == ("unsupported", "-")
    assert gov.reason.startswith("no cpufreq")
    assert plan.governor is None
    unit = tn.unit_text(plan)
    assert "scaling_governor" not in unit and "echo 50000" in unit


def test_nothing_for_the_unit_means_no_unit() -> None:
    facts = dataclasses.replace(VM, sched_debugfs_exists=False, sched_debugfs=None)
    plan = tn.plan_tuning("vm1", facts, BASE)
    assert not plan.needs_unit
    assert tn.unit_text(plan) is None


def test_governor_the_driver_does_not_offer() -> None:
    facts = dataclasses.replace(NEW, available_governors=("schedutil",), cpufreq_driver="cppc")
    gov = _by_setting(tn.plan_tuning("gpu1", facts, BASE))["cpu governor"]
    assert gov.status == "unsupported"
    assert gov.reason == "cppc offers only schedutil"


def test_recipe_sysctl_and_governor_win_over_the_baseline() -> None:
    wanted = tn.Wanted.merge(
        {"vm.swappiness": "10", "net.core.somaxconn": 4096},
        "schedutil",
        "my-recipe",
    )
    assert wanted.sysctl["vm.swappiness"] == "10"
    assert wanted.sysctl["kernel.numa_balancing"] == "0"  # baseline kept
    facts = dataclasses.replace(
        NEW,
        sysctl={**NEW.sysctl, "net.core.somaxconn": "4096"},
        writable=NEW.writable | {"net.core.somaxconn"},
        available_governors=("performance", "powersave", "schedutil"),
    )
    plan = tn.plan_tuning("gpu1", facts, wanted)
    assert plan.sysctl_conf.splitlines()[1:] == [
        "# baseline + recipe my-recipe; only sysctls this kernel has are listed.",
        "kernel.numa_balancing = 0",
        "net.core.somaxconn = 4096",
        "vm.swappiness = 10",
    ]
    assert _by_setting(plan)["net.core.somaxconn"].reason.startswith("already set")
    assert plan.governor == "schedutil"
    assert "echo schedutil >" in tn.unit_text(plan)


def test_catalog_recipe_sysctls_render_into_the_plan(catalog) -> None:
    recipe = catalog.recipe("ascend-a3-w4a8-in16k-out1k-20ms")
    wanted = tn.Wanted.merge(dict(recipe.sysctl), recipe.cpu_governor, recipe.id)
    assert wanted.sysctl == tn.BASELINE_SYSCTL and wanted.governor == "performance"


def test_second_run_has_nothing_to_do() -> None:
    """A host already tuned: every knob applied and "already set", no drift to act on."""
    facts = dataclasses.replace(
        NEW,
        sysctl={"vm.swappiness": "0", "kernel.numa_balancing": "0"},
        sched_debugfs="50000",
        governors=("performance",),
        unit_present=True,
        unit_active="active",
    )
    plan = tn.plan_tuning("gpu1", facts, BASE)
    assert not plan.sysctl_drift and not plan.unit_drift
    assert all(f.status == "applied" and "already set" in f.reason for f in plan.findings)


def test_container_keeps_its_hands_off_kernel_global_knobs() -> None:
    """A writable /proc/sys in a container reaches the host's kernel: skip unless allowed."""
    facts = dataclasses.replace(NEW, container="systemd-nspawn")
    plan = tn.plan_tuning("lab1", facts, BASE)
    assert plan.sysctl_conf is None and plan.apply_command is None
    assert not plan.needs_unit
    statuses = {f.setting: f.status for f in plan.findings}
    assert statuses == {
        "kernel.numa_balancing": "skipped",
        "vm.swappiness": "skipped",
        "kernel.sched_migration_cost_ns (debugfs)": "skipped",
        "cpu governor": "skipped",
    }
    assert "systemd-nspawn container" in plan.findings[0].reason
    assert "tuning_in_container" in plan.findings[0].fix
    allowed = tn.plan_tuning("lab1", facts, BASE, allow_container=True)
    assert allowed.sysctl_conf is not None and allowed.apply_command is not None
    assert all(f.status == "applied" for f in allowed.findings)


def test_namespaced_sysctls_are_fine_in_a_container() -> None:
    assert not tn.host_global("net.core.somaxconn")
    assert not tn.host_global("kernel.shmmax")
    assert tn.host_global("vm.swappiness") and tn.host_global("kernel.numa_balancing")


def test_strict_mode_turns_each_knob_not_applied_into_an_error() -> None:
    facts = dataclasses.replace(VM, proc_sys_writable=False, writable=frozenset())
    plan = tn.plan_tuning("vm1", facts, BASE, strict=True)
    errors = {p.field: p for p in plan.errors}
    assert set(errors) == {
        "tuning kernel.numa_balancing",
        "tuning vm.swappiness",
        "tuning cpu governor",
    }
    assert str(errors["tuning cpu governor"]) == (
        "vm1: tuning cpu governor: unsupported: no cpufreq (usual in VMs: the hypervisor owns "
        "CPU frequency) (wanted performance) (fix: nothing to do in a VM; on bare metal let the "
        "OS control P-states in the BIOS and load a cpufreq driver)"
    )
    assert str(errors["tuning vm.swappiness"]).startswith(
        "vm1: tuning vm.swappiness: skipped: /proc/sys is read-only here: written to "
        "/etc/sysctl.d/90-llmfleet.conf for the next boot, not applied (wanted 0) (fix: "
    )
    # the same host without strict mode: warnings, nothing fails
    lenient = tn.plan_tuning("vm1", facts, BASE)
    assert not lenient.errors and len(lenient.problems) == 3


def test_strict_mode_is_quiet_when_everything_applies() -> None:
    assert not tn.plan_tuning("gpu1", NEW, BASE, strict=True).problems


def test_recipe_values_cannot_inject_shell() -> None:
    wanted = tn.Wanted.merge({"kernel.sched_migration_cost_ns": "1; reboot"}, "perf; reboot")
    plan = tn.plan_tuning("gpu1", NEW, wanted)
    f = _by_setting(plan)
    assert f["kernel.sched_migration_cost_ns (debugfs)"].status == "unsupported"
    assert f["cpu governor"].status == "unsupported"
    assert not plan.needs_unit


FACT_OUTPUT = """\
=== $ kernel
6.8.0-45-generic
=== $ container
none
=== $ proc_sys_writable
yes
=== $ sysctl
kernel.numa_balancing\trw\t1\x20
vm.swappiness\tro\t60\x20
=== $ debugfs
exists
writable
value 500000
=== $ lockdown
[none] integrity confidentiality
=== $ cpufreq_driver
intel_pstate
=== $ governors
performance
powersave
=== $ available_governors
performance powersave
=== $ cpufreq_writable
yes
=== $ unit
present
active
"""


def test_parse_tuning_fact_output() -> None:
    state = parse_tuning(split_sections(FACT_OUTPUT))
    assert state == TuningState(
        kernel="6.8.0-45-generic",
        container=None,
        proc_sys_writable=True,
        sysctl={"kernel.numa_balancing": "1", "vm.swappiness": "60"},
        writable=frozenset({"kernel.numa_balancing"}),
        sched_debugfs_exists=True,
        sched_debugfs_writable=True,
        sched_debugfs="500000",
        lockdown="none",
        cpufreq_driver="intel_pstate",
        governors=("performance", "powersave"),
        available_governors=("performance", "powersave"),
        cpufreq_writable=True,
        unit_present=True,
        unit_active="active",
    )


def test_parse_tuning_of_a_bare_container() -> None:
    text = "=== $ kernel\n6.18.4\n=== $ container\nsystemd-nspawn\n=== $ unit\ninactive\n"
    state = parse_tuning(split_sections(text))
    assert state.container == "systemd-nspawn"
    assert (state.governors, state.sysctl, state.unit_present) == ((), {}, False)
    assert state.unit_active == "inactive"


def test_tuning_commands_refuse_odd_keys() -> None:
    with pytest.raises(ValueError):
        tuning_commands(["vm.swappiness; rm -rf /"], tn.UNIT_NAME)


def test_onboarding_needs_hardware_not_a_recipe(catalog) -> None:
    assert plan_onboard(catalog, "gpu1", {"hardware": "h200"}).ok
    missing = plan_onboard(catalog, "gpu1", {})
    assert [(p.field, p.message) for p in missing.problems] == [
        ("hardware", "no hardware profile set")
    ]
    typo = plan_onboard(catalog, "gpu1", {"hardware": "h20"})
    assert "did you mean h200" in typo.problems[0].message
    wrong = plan_onboard(catalog, "gpu1", {"hardware": "h200", "recipe": "vllm-mi355x-fp8"})
    assert not wrong.ok and wrong.problems[0].field == "recipe"
    good = plan_onboard(catalog, "gpu1", {"hardware": "h200", "recipe": "vllm-h200-fp8-text-dp-ep"})
    assert good.ok and good.rendered is not None
