"""Releases: every serve deploy is an immutable, content-addressed release on the host.

    /var/lib/llmfleet/releases/<id>/{manifest.json, llmfleet-serve.service, serve.env}
    /var/lib/llmfleet/releases/current -> <id>     what runs (set only once healthy)
    /var/lib/llmfleet/releases/previous -> <id>    what ran before (rollback target)

The id is a hash of the unit and environment file, which between them pin
everything that runs: the engine venv (its path is a hash of its pins), the
model snapshot (its path holds the commit), every flag and variable.  Engine
venvs and weight snapshots are shared by path and never deleted with a
release, so going back to one needs no download.  Old releases beyond
``release_keep`` are pruned; current and previous never are.
"""

from __future__ import annotations

import json
from io import StringIO

from pyinfra.api import FactBase
from pyinfra.api.operation import OperationMeta
from pyinfra.operations import files, server

from llmfleet.hostpaths import ENV_FILE, RELEASES, UNIT_FILE, UNIT_NAME, release_dir
from llmfleet.manifest import ReleaseState, list_command
from llmfleet.serveplan import ServePlan


class Releases(FactBase):
    """The releases kept on the host: current, previous and every manifest."""

    def command(self, root: str = RELEASES) -> str:
        return list_command(root)

    def process(self, output: list[str]) -> ReleaseState:
        try:
            return ReleaseState.from_json(json.loads(output[-1]))
        except (ValueError, IndexError):
            return self.default()

    def default(self) -> ReleaseState:
        return ReleaseState()


def stage(plan: ServePlan) -> list[OperationMeta]:
    """Write the plan's release directory (no effect on what runs)."""
    d = release_dir(plan.release)
    return [
        files.directory(name=f"Release {plan.release}", path=d, mode="700"),
        files.put(
            name="Release manifest",
            src=StringIO(plan.manifest.text()),
            dest=f"{d}/manifest.json",
            mode="600",
        ),
        files.put(
            name="Release unit",
            src=StringIO(plan.unit),
            dest=f"{d}/{UNIT_NAME}.service",
            mode="600",
        ),
        files.put(
            name="Release environment", src=StringIO(plan.env), dest=f"{d}/serve.env", mode="600"
        ),
    ]


def activate_commands(rid: str) -> list[str]:
    """Put a staged release's unit and env file in place and restart the server."""
    d = release_dir(rid)
    return [
        f"install -m 644 {d}/{UNIT_NAME}.service {UNIT_FILE}",
        f"install -m 600 {d}/serve.env {ENV_FILE}",
        "systemctl daemon-reload",
        f"systemctl reset-failed {UNIT_NAME}.service || true",
        f"systemctl restart {UNIT_NAME}.service",
    ]


def promote_commands(rid: str, keep: int, root: str | None = None) -> list[str]:
    """current -> rid, previous -> the old current; prune beyond ``keep`` releases
    (under ``root``: the server's releases, or the router's)."""
    r = root or RELEASES
    keep = max(int(keep), 2)
    return [
        f"cur=$(readlink {r}/current || true); "
        f'if [ -n "$cur" ] && [ "$cur" != {rid} ]; then ln -sfn "$cur" {r}/previous; fi',
        f"ln -sfn {rid} {r}/current.tmp && mv -T {r}/current.tmp {r}/current",
        # oldest first beyond `keep`, never current or previous
        f"cd {r} && cur=$(readlink current); prev=$(readlink previous || true); "
        f"ls -1t --group-directories-first | grep -v -e '^current$' -e '^previous$' "
        f'| tail -n +{keep + 1} | while read d; do [ "$d" = "$cur" ] || [ "$d" = "$prev" ] '
        f'|| rm -rf -- "$d"; done',
    ]


def promote(rid: str, keep: int, current: str | None, root: str = RELEASES) -> OperationMeta | None:
    if current == rid:
        return None
    return server.shell(
        name=f"Release {rid} is current",
        commands=[" && ".join(promote_commands(rid, keep, root))],
    )
