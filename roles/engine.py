"""Engine role: a pinned Python environment (built with uv) or a pinned image.

The environment's path is derived from a hash of what goes into it, so a new
pin builds beside the old one (rollback needs no reinstall) and an unchanged
pin is a no-op.  The marker file that says "installed" is written last, so an
interrupted install is redone from scratch on the next run, never used.
"""

from __future__ import annotations

import hashlib
import json
import shlex
from dataclasses import dataclass, field

from pyinfra import host
from pyinfra.api import deploy
from pyinfra.api.operation import OperationMeta
from pyinfra.facts.deb import DebPackages
from pyinfra.facts.files import File
from pyinfra.operations import apt, files, server

from llmfleet.catalog import Catalog, Recipe

from .facts import TextFile

ENGINES_DIR = "/opt/llmfleet/engines"
TOOLS_DIR = "/opt/llmfleet/tools"
UV = f"{TOOLS_DIR}/bin/uv"


@dataclass
class EngineSpec:
    """Everything that decides what goes into an engine environment (hashed into its path)."""

    packages: list[str]
    remove: list[str] = field(default_factory=list)
    system_packages: list[str] = field(default_factory=list)
    find_links: str | None = None
    index_url: str | None = None
    excludes: str | None = None
    python: str = "python3"
    uv: str = "uv"
    uv_url: str | None = None

    @property
    def key(self) -> str:
        body = json.dumps(self.__dict__, sort_keys=True)
        return hashlib.sha256(body.encode()).hexdigest()[:12]

    def marker(self) -> str:
        return json.dumps(self.__dict__, sort_keys=True)


def engine_spec(catalog: Catalog, recipe: Recipe, data: dict) -> EngineSpec:
    """Recipe pins, then engine defaults; host data may point at a site index/wheelhouse."""
    defaults = catalog.engines[recipe.engine].get("install", {})
    install = {**defaults, **recipe.install}
    return EngineSpec(
        packages=list(data.get("engine_packages") or install.get("packages") or []),
        remove=list(install.get("remove", [])),
        system_packages=list(install.get("system_packages", [])),
        find_links=data.get("engine_find_links"),
        index_url=data.get("engine_index_url"),
        excludes=data.get("engine_excludes"),
        python=install.get("python", "python3"),
        uv=str(data.get("uv_requirement") or install.get("uv", "uv")),
        uv_url=data.get("uv_url"),
    )


def venv_path(recipe: Recipe, spec: EngineSpec) -> str:
    return f"{ENGINES_DIR}/{recipe.engine}-{spec.key}"


def _source_args(spec: EngineSpec) -> list[str]:
    if spec.find_links:
        return ["--no-index", "--find-links", spec.find_links]
    if spec.index_url:
        return ["--index-url", spec.index_url]
    return []


def install_commands(spec: EngineSpec, venv: str) -> list[str]:
    """Shell steps that build ``venv`` from scratch; the marker goes last.

    Packages the recipe says to leave out (they break the engine) are kept out
    of resolution with uv's ``--excludes`` rather than uninstalled afterwards,
    so they are never downloaded and a wheelhouse need not carry them.
    """
    q = shlex.quote
    excludes = f"{venv}.excludes"
    exclude_args = [f"--excludes {q(excludes)}"] if spec.remove else []
    if spec.excludes:
        exclude_args.append(f"--excludes {q(spec.excludes)}")
    steps = [f"rm -rf {q(venv)} {q(excludes)}"]
    if spec.remove:
        steps.append(f"printf '%s\\n' {' '.join(q(p) for p in spec.remove)} > {q(excludes)}")
    steps += [
        f"UV_PYTHON_DOWNLOADS=never {UV} venv -q --python {q(spec.python)} {q(venv)}",
        " ".join(
            [
                f"{UV} pip install -q --python {q(venv)}/bin/python",
                *(q(a) for a in _source_args(spec)),
                *exclude_args,
                *(q(p) for p in spec.packages),
            ]
        ),
        f"printf '%s' {q(spec.marker())} > {q(venv)}/.llmfleet-engine",
    ]
    return steps


def uv_bootstrap_commands(spec: EngineSpec) -> list[str]:
    """Put a uv binary at ``UV``: fetched from ``uv_url`` (air-gapped sites) or pip-installed."""
    q = shlex.quote
    if spec.uv_url:
        fetch = "import sys, urllib.request; urllib.request.urlretrieve(sys.argv[1], sys.argv[2])"
        return [
            f"mkdir -p {TOOLS_DIR}/bin",
            f"python3 -c {q(fetch)} {q(spec.uv_url)} {UV}.tmp",
            f"chmod 755 {UV}.tmp",
            f"mv {UV}.tmp {UV}",
        ]
    src = " ".join(q(a) for a in _source_args(spec))
    return [f"python3 -m venv {TOOLS_DIR}", f"{TOOLS_DIR}/bin/pip install -q {src} {q(spec.uv)}"]


@deploy("Engine environment")
def engine_env(spec: EngineSpec, venv: str, ops: list[OperationMeta]) -> None:
    installed = host.get_fact(DebPackages) if spec.system_packages else {}
    missing = [p for p in spec.system_packages if p not in installed]
    if missing:  # refresh the apt lists only when there is something to install
        ops.append(
            apt.packages(
                name=f"System packages the engine loads: {' '.join(missing)}",
                packages=missing,
                update=True,
                cache_time=3600,
            )
        )
    if not host.get_fact(File, path=UV):
        ops.append(
            server.shell(name="Install uv", commands=[" && ".join(uv_bootstrap_commands(spec))])
        )
    if host.get_fact(TextFile, path=f"{venv}/.llmfleet-engine") == spec.marker():
        return
    ops.append(files.directory(name="Engines directory", path=ENGINES_DIR, mode="755"))
    ops.append(
        server.shell(
            name=f"Install {' '.join(spec.packages)} into {venv}",
            commands=[" && ".join(install_commands(spec, venv))],
        )
    )
