"""Host tuning role: sysctl.d file, applied when it changes; a oneshot unit for the rest.

Thin glue over ``llmfleet.tuning``, which decides everything from one fact.
Re-runs stay quiet: the file is compared by checksum, ``sysctl -p`` runs only
when the file changed or a live value drifted from it, daemon-reload only
when the unit changed, and the unit restarts only when it changed or the
value it writes drifted.  ``tuning_strict: true`` fails the host, touching
nothing, when any knob cannot be applied; by default those are reported.
"""

from __future__ import annotations

from io import StringIO

from pyinfra import host
from pyinfra.api import deploy
from pyinfra.operations import files, server, systemd

from llmfleet import tuning as tn
from llmfleet.settings import Settings

from . import summary
from .hostfacts import HostTuning
from .plan import fail_host


@deploy("Host tuning")
def host_tuning(
    *,
    recipe_id: str | None = None,
    recipe_sysctl: dict[str, str] | None = None,
    recipe_governor: str | None = None,
    strict: bool = False,
    in_container: bool = False,
) -> tn.TuningPlan | None:
    """Tune this host for serving; returns the plan, or None when strict mode failed it."""
    wanted = tn.Wanted.merge(recipe_sysctl, recipe_governor, recipe_id)
    facts = host.get_fact(HostTuning, keys=tuple(sorted(wanted.sysctl)), unit=tn.UNIT_NAME)
    plan = tn.plan_tuning(host.name, facts, wanted, strict=strict, allow_container=in_container)
    summary.note_tuning(host.name, plan.findings)
    if plan.errors:
        fail_host("; ".join(str(p) for p in plan.errors))  # also records it for the table
        return None
    for problem in plan.problems:
        print(f"[{host.name}] tuning: {problem}")

    _sysctl_file(plan)
    _unit(plan, present=facts.unit_present, active=facts.unit_active == "active")
    return plan


def _sysctl_file(plan: tn.TuningPlan) -> None:
    if plan.sysctl_conf is None:
        files.file(name=f"No {tn.SYSCTL_CONF}", path=tn.SYSCTL_CONF, present=False)
        return
    conf = files.put(
        name=f"sysctls in {tn.SYSCTL_CONF}",
        src=StringIO(plan.sysctl_conf),
        dest=tn.SYSCTL_CONF,
        user="root",
        group="root",
        mode="644",
    )
    if plan.apply_command:
        drift = plan.sysctl_drift
        server.shell(
            name="Apply sysctls now",
            commands=[plan.apply_command],
            _if=lambda: conf.did_change() or drift,
        )


def _unit(plan: tn.TuningPlan, *, present: bool, active: bool) -> None:
    text = tn.unit_text(plan)
    if text is None:
        if present:  # an earlier run wrote it; this host no longer needs it
            systemd.service(
                name=f"Stop {tn.UNIT_NAME}", service=tn.UNIT_NAME, running=False, enabled=False
            )
            gone = files.file(name=f"Remove {tn.UNIT_FILE}", path=tn.UNIT_FILE, present=False)
            systemd.daemon_reload(name="Reload systemd", _if=gone.did_change)
        return
    unit = files.put(
        name=f"{tn.UNIT_NAME} (governor, scheduler knob at boot)",
        src=StringIO(text),
        dest=tn.UNIT_FILE,
        user="root",
        group="root",
        mode="644",
    )
    systemd.daemon_reload(name="Reload systemd", _if=unit.did_change)
    if active:
        drift = plan.unit_drift
        systemd.service(
            name=f"Re-apply {tn.UNIT_NAME}",
            service=tn.UNIT_NAME,
            restarted=True,
            _if=lambda: unit.did_change() or drift,
        )
    systemd.service(
        name=f"{tn.UNIT_NAME} enabled and started",
        service=tn.UNIT_NAME,
        running=True,
        enabled=True,
    )


def host_tuning_from_settings(
    recipe_id: str | None, sysctl: dict[str, str] | None, governor: str | None, s: Settings
) -> tn.TuningPlan | None:
    """The role with the switches ``tuning_strict`` and ``tuning_in_container``."""
    return host_tuning(
        recipe_id=recipe_id,
        recipe_sysctl=sysctl,
        recipe_governor=governor,
        strict=s.tuning_strict,
        in_container=s.tuning_in_container,
    )
