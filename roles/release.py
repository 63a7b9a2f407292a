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

import hashlib
import json
import shlex
from io import StringIO

from pyinfra.api import FactBase
from pyinfra.api.operation import OperationMeta
from pyinfra.operations import files, server

from llmfleet.render import UNIT_NAME

RELEASES = "/var/lib/llmfleet/releases"
UNIT_FILE = f"/etc/systemd/system/{UNIT_NAME}.service"
ENV_FILE = "/etc/llmfleet/serve.env"

_LIST = r"""
import json, os, sys
root = sys.argv[1]
out = {"current": None, "previous": None, "releases": {}}
for link in ("current", "previous"):
    p = os.path.join(root, link)
    out[link] = os.path.basename(os.readlink(p)) if os.path.islink(p) else None
if os.path.isdir(root):
    for name in sorted(os.listdir(root)):
        m = os.path.join(root, name, "manifest.json")
        if not os.path.islink(os.path.join(root, name)) and os.path.isfile(m):
            try:
                out["releases"][name] = json.load(open(m))
            except ValueError:
                pass
print(json.dumps(out))
"""


class Releases(FactBase):
    """``{"current", "previous", "releases": {id: manifest}}`` on the host."""

    def command(self, root: str = RELEASES) -> str:
        return f"python3 -c {shlex.quote(_LIST)} {shlex.quote(root)}"

    def process(self, output: list[str]) -> dict:
        try:
            return json.loads(output[-1])
        except (ValueError, IndexError):
            return self.default()

    def default(self) -> dict:
        return {"current": None, "previous": None, "releases": {}}


def release_id(unit: str, env: str) -> str:
    return hashlib.sha256(f"{unit}\0{env}".encode()).hexdigest()[:12]


def stage(rid: str, unit: str, env: str, manifest: dict) -> list[OperationMeta]:
    """Write the release directory (no effect on what runs)."""
    d = f"{RELEASES}/{rid}"
    return [
        files.directory(name=f"Release {rid}", path=d, mode="700"),
        files.put(
            name="Release manifest",
            src=StringIO(json.dumps(manifest, indent=2) + "\n"),
            dest=f"{d}/manifest.json",
            mode="600",
        ),
        files.put(
            name="Release unit", src=StringIO(unit), dest=f"{d}/{UNIT_NAME}.service", mode="600"
        ),
        files.put(name="Release environment", src=StringIO(env), dest=f"{d}/serve.env", mode="600"),
    ]


def activate_commands(rid: str) -> list[str]:
    """Put a staged release's unit and env file in place and restart the server."""
    d = f"{RELEASES}/{rid}"
    return [
        f"install -m 644 {d}/{UNIT_NAME}.service {UNIT_FILE}",
        f"install -m 600 {d}/serve.env {ENV_FILE}",
        "systemctl daemon-reload",
        f"systemctl reset-failed {UNIT_NAME}.service || true",
        f"systemctl restart {UNIT_NAME}.service",
    ]


def promote_commands(rid: str, keep: int) -> list[str]:
    """current -> rid, previous -> the old current; prune beyond ``keep`` releases."""
    r = RELEASES
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


def promote(rid: str, keep: int, current: str | None) -> OperationMeta | None:
    if current == rid:
        return None
    return server.shell(
        name=f"Release {rid} is current", commands=[" && ".join(promote_commands(rid, keep))]
    )


def find(state: dict, wanted: str | None) -> tuple[str | None, str]:
    """(release id, "") for ``wanted`` (an id, its prefix, or None for previous), or
    (None, why) with the choices named."""
    releases = state.get("releases", {})
    if not wanted:
        prev = state.get("previous")
        if prev and prev in releases:
            return prev, ""
        return None, "no previous release on this host to roll back to"
    hits = [r for r in releases if r.startswith(wanted)]
    if len(hits) == 1:
        return hits[0], ""
    known = ", ".join(sorted(releases)) or "none"
    return None, f"release {wanted!r} {'is ambiguous' if hits else 'not found'} (releases: {known})"
