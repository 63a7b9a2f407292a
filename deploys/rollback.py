"""Roll back to the previous release (or a named one), health-gated; no download.

    pyinfra inventories/lab.py deploys/rollback.py                      # previous release
    pyinfra inventories/lab.py deploys/rollback.py --data release=ID    # a named one
    pyinfra INVENTORY deploys/rollback.py --limit HOST

The release's unit and environment file go back in place and the server is
restarted; its engine venv and weight snapshot are still on the host (they
are shared by path, never deleted with a release).  If it does not become
healthy, the release that was running comes back and the host fails.  With a
router in the inventory the host leaves it first, its in-flight requests are
drained (``drain_timeout``), and it goes back in only once healthy.

A serving group's members (``serve_group``) go back together: the run must target
all of them, each goes to its own previous release, the group is judged as one
(the head by HTTP and a completion, workers by their connection to rank 0) and, if
it is not healthy, every member returns to what it ran (``roles/group.py``).
"""

from pyinfra import host, inventory
from pyinfra.facts.files import File
from pyinfra.operations import python, server

from llmfleet.containers import runtime_doc
from llmfleet.errors import LlmfleetError
from llmfleet.hostpaths import ENV_MARKER
from llmfleet.manifest import ReleaseManifest
from llmfleet.servegroup import group_map
from llmfleet.settings import Settings, parse_settings
from roles import summary
from roles.container import ContainerState
from roles.drain import back_in, drained
from roles.group import group_health
from roles.health import Target, gate
from roles.plan import fail_host, settings_only, whole_group_error
from roles.release import Releases, activate_commands, promote
from roles.run import current_run, record


def _engine_present(m: ReleaseManifest) -> bool:
    """Going back needs no download: the release's venv or image must still be here."""
    if m.image:
        return host.get_fact(ContainerState, package=runtime_doc()["package"], image=m.image)[
            "image"
        ]
    return bool(host.get_fact(File, path=f"{m.venv}/{ENV_MARKER}"))


def rollback(s: Settings) -> None:
    known = host.get_fact(Releases)
    target, why = known.find(s.release)
    if target is None:
        fail_host(f"{host.name}: release: {why}")
        return
    manifest = known.releases[target]
    rec = record(host.name)
    rec.recipe, rec.release, rec.model = manifest.recipe, target, manifest.model
    current = known.current
    members = group_members(s)
    if current == target and not members:
        print(f"    [{host.name}] already on release {target}: nothing to do")
        return
    if not _engine_present(manifest):
        what = f"image {manifest.image}" if manifest.image else f"engine venv {manifest.venv}"
        fail_host(
            f"{host.name}: release {target}: its {what} is gone "
            "(fix: deploy that configuration again with deploys/serve.py)"
        )
        return
    cur = known.releases.get(current) if current else None
    drain = drained(s)  # out of the fleet's router while it restarts (none: no router)
    switch = []
    if current != target:
        switch.append(
            server.shell(
                name=f"Switch to release {target}",
                commands=[" && ".join(activate_commands(target))],
            )
        )
    if members:  # one server on several hosts: every member goes back, judged together
        assert s.serve_group
        group_health(
            s.serve_group,
            members,
            manifest,
            changed=switch,
            timeout=s.health_timeout,
            revert=cur if current != target else None,
            running=True,
        )
    else:
        python.call(
            name="Wait until serving (health, models, one completion)",
            function=gate,
            target=Target.of(manifest),
            timeout=s.health_timeout,
            revert=Target.of(cur) if cur else None,
        )
    back_in(drain)
    promote(target, s.release_keep, current)


def serve_groups() -> dict[str, list[str]]:
    """Serving group -> members in inventory order, parsed once per run for the whole
    inventory (each host asking every host's settings was N^2 parses: 250,000 for a
    500-host fleet)."""
    run = current_run()
    with run.lock:
        if run.serve_groups is None:
            run.serve_groups = group_map(
                (h.name, parse_settings(h.name, dict(h.data.dict()))[0].serve_group)
                for h in inventory
            )
    return run.serve_groups


def group_members(s: Settings) -> list[str]:
    """The inventory hosts of this host's serving group (none: a one-node server); a
    group rolls back whole, so a run that leaves out a member fails every member."""
    if not s.serve_group:
        return []
    members = serve_groups().get(s.serve_group, [])
    error = whole_group_error(s.serve_group, members)
    if error:
        raise LlmfleetError(error)
    if s.release:
        raise LlmfleetError(
            f"{host.name}: release: {s.release} names one host's release, but "
            f"{host.name} is a member of serve group {s.serve_group}, whose members' "
            "release ids differ (fix: drop release to go back to the previous release on "
            "every member)"
        )
    return members


summary.register("llmfleet rollback")
_settings = settings_only()
if _settings is not None:
    try:
        rollback(_settings)
    except LlmfleetError as exc:
        fail_host(str(exc))
