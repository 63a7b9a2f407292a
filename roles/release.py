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

from .accounts import secret_file


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


def stage_files(
    what: str, rid: str, d: str, manifest: str, unit: tuple[str, str], env: tuple[str, str]
) -> list[OperationMeta]:
    """A release directory ``d``: its manifest, unit and environment file as
    ``(file name, text)``, all 0600 (no effect on what runs).  The server's releases and
    the router's share this shape, so a rollback of either reads the same files."""
    return [
        files.directory(name=f"{what} {rid}", path=d, mode="700"),
        files.put(
            name=f"{what} manifest", src=StringIO(manifest), dest=f"{d}/manifest.json", mode="600"
        ),
        files.put(name=f"{what} unit", src=StringIO(unit[1]), dest=f"{d}/{unit[0]}", mode="600"),
        secret_file(f"{what} environment", env[1], f"{d}/{env[0]}"),
    ]


def stage(plan: ServePlan) -> list[OperationMeta]:
    """Write the plan's release directory (no effect on what runs)."""
    return stage_files(
        "Release",
        plan.release,
        release_dir(plan.release),
        plan.manifest.text(),
        (f"{UNIT_NAME}.service", plan.unit),
        ("serve.env", plan.env),
    )


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
