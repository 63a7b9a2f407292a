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
"""

from pyinfra import host
from pyinfra.facts.files import File
from pyinfra.operations import python, server

from llmfleet.containers import runtime_doc
from llmfleet.hostpaths import ENV_MARKER
from llmfleet.manifest import ReleaseManifest
from llmfleet.settings import Settings
from roles import summary
from roles.container import ContainerState
from roles.drain import back_in, drained
from roles.health import Target, gate
from roles.plan import fail_host, settings_only
from roles.release import Releases, activate_commands, promote
from roles.run import record


def _engine_present(m: ReleaseManifest) -> bool:
    """Going back needs no download: the release's venv or image must still be here."""
    if m.image:
        return host.get_fact(ContainerState, package=runtime_doc()["package"], image=m.image)[
            "image"
        ]
    return bool(host.get_fact(File, path=f"{m.venv}/{ENV_MARKER}"))


def rollback(s: Settings) -> None:
    state = host.get_fact(Releases)
    target, why = state.find(s.release)
    if target is None:
        fail_host(f"{host.name}: release: {why}")
        return
    manifest = state.releases[target]
    rec = record(host.name)
    rec.recipe, rec.release, rec.model = manifest.recipe, target, manifest.model
    current = state.current
    if current == target:
        print(f"    [{host.name}] already on release {target}: nothing to do")
        return
    if not _engine_present(manifest):
        what = f"image {manifest.image}" if manifest.image else f"engine venv {manifest.venv}"
        fail_host(
            f"{host.name}: release {target}: its {what} is gone "
            "(fix: deploy that configuration again with deploys/serve.py)"
        )
        return
    cur = state.releases.get(current) if current else None
    drain = drained(s)  # out of the fleet's router while it restarts (none: no router)
    server.shell(
        name=f"Switch to release {target}", commands=[" && ".join(activate_commands(target))]
    )
    python.call(
        name="Wait until serving (health, models, one completion)",
        function=gate,
        target=Target.of(manifest),
        timeout=s.health_timeout,
        revert=Target.of(cur) if cur else None,
    )
    back_in(drain)
    promote(target, s.release_keep, current)


summary.register("llmfleet rollback")
_settings = settings_only()
if _settings is not None:
    rollback(_settings)
