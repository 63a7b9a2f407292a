"""Group role: a multi-node server's members start, are judged and revert together.

The decisions are ``llmfleet/grouplife.py``'s; this applies them with pyinfra's own
execution order.  pyinfra runs each operation on every targeted host before the
next one, so three operations, queued on every member after its unit and env file
are in place, act as one step each for the whole group:

1. **start and judge**: every member restarts at once when any member's release
   changed (a restarted rank cannot join ranks that kept running), then is judged
   by its role: the head by HTTP and one completion, a worker by its unit and its
   connection to rank 0.  Results go to the run (``roles/run.py``), nothing fails yet.
2. **verdict**: if any member failed (or never got this far), every member puts its
   previous release back and restarts it, all at once.
3. **back**: every reverted member is judged again and the members fail, naming
   the member that broke the group, its stage and journal.

The watchdog unit (``files/scripts/llmfleet-group-watch.py``) is installed on every
member; it restarts a member whose group broke after the deploy is done.  (A run
with pyinfra's ``--serial`` or ``--no-wait`` breaks the step-for-step order; a
member that finds no result from another then counts it as failed and reverts.)
"""

from __future__ import annotations

import time
from io import StringIO

from pyinfra import host
from pyinfra.api import deploy
from pyinfra.api.operation import OperationMeta
from pyinfra.operations import files, python, systemd
from pyinfra.operations.util import any_changed

from llmfleet.grouplife import Judge, verdict
from llmfleet.hostpaths import GROUP_WATCH_SCRIPT, GROUP_WATCH_UNIT, HEALTH_SCRIPT, UNIT_NAME
from llmfleet.manifest import ReleaseManifest
from llmfleet.unitfile import jinja_env

from .facts import GroupLink
from .health import SCRIPTS, Target, health_script, probe, probe_command, served_now
from .release import activate_commands
from .run import current_run, record


def _changed(group: str, *, gate_only: bool = False) -> bool:
    """Did any member's unit, env, engine or weights change in this run (so far)?  With
    ``gate_only`` also its health script: that re-judges the group, restarting nothing."""
    members = current_run().group_changes.get(group, {})
    return any(op.did_change() for ops in members.values() for op in ops[0 if gate_only else 1 :])


def start_and_judge(group: str, target: Target, judge: Judge, timeout: int, running: bool):
    """Step 1 on one member: restart with the group when it changed, then judge."""
    began = time.monotonic()
    if running and _changed(group):  # a member that was down was started by the unit op
        host.run_shell_command(f"systemctl restart {UNIT_NAME}.service")
    result = probe(probe_command(target, timeout, judge))
    rec = record(host.name)
    rec.timings["health_s"] = round(time.monotonic() - began, 1)
    rec.health = {**result, "release": target.release, "role": judge.role}
    current_run().group_results.setdefault(group, {})[host.name] = result


def _broken(group: str, members: list[str]) -> dict[str, dict]:
    results = current_run().group_results.get(group, {})
    return {h: results.get(h, {}) for h in verdict({m: results.get(m) for m in members})}


def _why(broken: dict[str, dict]) -> str:
    return "; ".join(
        f"{h} at {r.get('stage', '?')}: {r.get('error', 'no result (it failed earlier)')}"
        for h, r in broken.items()
    )


def revert_if_broken(group: str, members: list[str], revert: Target | None) -> None:
    """Step 2 on one member: the group is healthy only when every member is."""
    broken = _broken(group, members)
    if not broken:
        return
    if revert is None:
        raise RuntimeError(
            f"{host.name}: serve group {group} not healthy ({_why(broken)}), and this member "
            "has no previous release to go back to"
        )
    host.run_shell_command(" && ".join(activate_commands(revert.release)))


def report_back(
    group: str, members: list[str], revert: Target | None, judge: Judge, timeout: int
) -> None:
    """Step 3 on one member: judge the previous release again and fail, saying why."""
    broken = _broken(group, members)
    if not broken or revert is None:
        return
    back = probe(probe_command(revert, timeout, judge))
    state = "healthy again" if back.get("ok") else f"NOT healthy either: {back.get('error')}"
    failure = (
        f"{host.name}: serve group {group} not healthy on release {revert.release!r}'s "
        f"successor ({_why(broken)}); every member went back to its previous release: "
        f"this one to {revert.release} ({state})"
    )
    rec = record(host.name)
    rec.health = {**rec.health, "ok": False, "error": failure, "rolled_back": revert.release}
    tails = {h: "\n".join(r.get("journal", "").splitlines()[-15:]) for h, r in broken.items()}
    shown = "\n".join(f"--- {h}: last journal lines ---\n{t}" for h, t in tails.items() if t)
    raise RuntimeError(f"{failure}\n{shown}")


def _probe_now(target: Target, judge: Judge) -> None:
    """What the member does now, for the summary when the run changes nothing."""
    if judge.is_head:
        seen = served_now(target)
    else:
        link = host.get_fact(GroupLink, script=HEALTH_SCRIPT, connect=judge.connect)
        seen = None if link is None else {**link, "probe": True}
    if seen is not None:
        record(host.name).health = seen


@deploy("Group watchdog")
def group_watch() -> OperationMeta:
    """The watchdog on every member; it reads the group from the env file each second,
    so a new release needs no change here."""
    script = files.put(
        name="Group watchdog script",
        src=str(SCRIPTS / "llmfleet-group-watch.py"),
        dest=GROUP_WATCH_SCRIPT,
        mode="755",
    )
    text = (
        jinja_env()
        .get_template("llmfleet-group-watch.service.j2")
        .render(script=GROUP_WATCH_SCRIPT, unit=f"{UNIT_NAME}.service")
    )
    unit = files.put(
        name="Group watchdog unit",
        src=StringIO(text),
        dest=f"/etc/systemd/system/{GROUP_WATCH_UNIT}",
        mode="644",
    )
    systemd.daemon_reload(name="Reload systemd", _if=unit.did_change)
    systemd.service(
        name="Group watchdog running", service=GROUP_WATCH_UNIT, running=True, enabled=True
    )
    return systemd.service(
        name="Group watchdog restarted (new script or unit)",
        service=GROUP_WATCH_UNIT,
        restarted=True,
        _if=any_changed(script, unit),
    )


@deploy("Group health")
def group_health(
    group: str,
    members: list[str],
    manifest: ReleaseManifest,
    changed: list[OperationMeta],
    timeout: int,
    revert: ReleaseManifest | None,
    running: bool,
) -> None:
    """Queue the three group steps on this member (see the module docstring)."""
    script = health_script()
    # the script first: it gates the group's steps but restarts nothing (see _changed)
    current_run().group_changes.setdefault(group, {})[host.name] = [script, *changed]
    target, back = Target.of(manifest), Target.of(revert) if revert else None
    judge = Judge.of(manifest.node)
    _probe_now(target, judge)
    when = {"_if": lambda: _changed(group, gate_only=True)}
    python.call(
        name=f"Group {group}: start together, judge as {judge.role}",
        function=start_and_judge,
        group=group,
        target=target,
        judge=judge,
        timeout=timeout,
        running=running,
        **when,
    )
    python.call(
        name=f"Group {group}: every member healthy, else every member back",
        function=revert_if_broken,
        group=group,
        members=members,
        revert=back,
        **when,
    )
    python.call(
        name=f"Group {group}: judge the previous release",
        function=report_back,
        group=group,
        members=members,
        revert=back,
        judge=Judge.of(revert.node) if revert else judge,
        timeout=timeout,
        **when,
    )
