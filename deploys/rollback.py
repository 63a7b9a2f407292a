"""Roll back to the previous release (or a named one), health-gated; no download.

    pyinfra inventories/lab.py deploys/rollback.py                      # previous release
    pyinfra inventories/lab.py deploys/rollback.py --data release=ID    # a named one
    pyinfra INVENTORY deploys/rollback.py --limit HOST

The release's unit and environment file go back in place and the server is
restarted; its engine venv and weight snapshot are still on the host (they
are shared by path, never deleted with a release).  If it does not become
healthy, the release that was running comes back and the host fails.
"""

from pyinfra import host
from pyinfra.facts.files import File
from pyinfra.operations import python, server

from roles import summary
from roles.health import gate
from roles.plan import fail_host
from roles.pyenvs import MARKER as ENV_MARKER
from roles.release import Releases, activate_commands, find, promote


def rollback() -> None:
    state = host.get_fact(Releases)
    target, why = find(state, host.data.get("release"))
    if target is None:
        fail_host(f"{host.name}: release: {why}")
        return
    manifest = state["releases"][target]
    summary.note(
        host.name,
        recipe=manifest.get("recipe", "-"),
        release=target,
        model=f"{manifest['model']['repo']}@{manifest['model']['commit'][:12]}",
    )
    current = state["current"]
    if current == target:
        print(f"    [{host.name}] already on release {target}: nothing to do")
        return
    venv = manifest["engine"].get("venv")
    if manifest["engine"].get("runtime") == "venv" and not host.get_fact(
        File, path=f"{venv}/{ENV_MARKER}"
    ):
        fail_host(
            f"{host.name}: release {target}: its engine venv {venv} is gone "
            "(fix: deploy that configuration again with deploys/serve.py)"
        )
        return
    cur = state["releases"].get(current) if current else None
    server.shell(
        name=f"Switch to release {target}", commands=[" && ".join(activate_commands(target))]
    )
    python.call(
        name="Wait until serving (health, models, one completion)",
        function=gate,
        port=manifest["port"],
        model=manifest["served_name"],
        timeout=int(host.data.get("health_timeout") or 900),
        revert={"id": current, "port": cur["port"], "model": cur["served_name"]} if cur else None,
        release=target,
    )
    promote(target, int(host.data.get("release_keep") or 5), current)


summary.register("llmfleet rollback")
rollback()
