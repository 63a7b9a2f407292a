"""uv-built Python environments on hosts: the engine's and the small tool venvs.

Every environment is built from scratch into its path, with a marker file
written last that records what went in; an unchanged marker is a no-op and
an interrupted build is redone, never used.  Where packages come from is the
site's choice (a wheelhouse for air-gapped sites, an index, or PyPI), and uv
itself can come from a plain URL so a bare host needs nothing but python3.
"""

from __future__ import annotations

import json
import shlex
from dataclasses import asdict

from pyinfra import host
from pyinfra.api.operation import OperationMeta
from pyinfra.facts.files import File
from pyinfra.operations import files, server

from llmfleet.engineenv import PackageSource
from llmfleet.hostpaths import ENV_MARKER as MARKER
from llmfleet.hostpaths import TOOLS_DIR, UV

from .facts import TextFile
from .run import current_run


def uv_bootstrap_commands(src: PackageSource) -> list[str]:
    """Put a uv binary at ``UV``: fetched from ``uv_url`` (air-gapped sites) or pip-installed."""
    q = shlex.quote
    if src.uv_url:
        fetch = "import sys, urllib.request; urllib.request.urlretrieve(sys.argv[1], sys.argv[2])"
        return [
            f"mkdir -p {TOOLS_DIR}/bin",
            f"python3 -c {q(fetch)} {q(src.uv_url)} {UV}.tmp",
            f"chmod 755 {UV}.tmp",
            f"mv {UV}.tmp {UV}",
        ]
    pip_src = " ".join(q(a) for a in src.args())
    return [f"python3 -m venv {TOOLS_DIR}", f"{TOOLS_DIR}/bin/pip install -q {pip_src} {q(src.uv)}"]


def install_commands(
    venv: str,
    packages: list[str],
    src: PackageSource,
    *,
    python: str = "python3",
    leave_out: list[str] | None = None,
    marker: str = "",
) -> list[str]:
    """Shell steps that build ``venv`` from scratch; the marker goes last.

    Packages to leave out (they break the engine) are kept out of resolution
    with uv's ``--excludes`` rather than uninstalled afterwards, so they are
    never downloaded and a wheelhouse need not carry them.
    """
    q = shlex.quote
    excludes = f"{venv}.excludes"
    exclude_args = [f"--excludes {q(excludes)}"] if leave_out else []
    if src.excludes:
        exclude_args.append(f"--excludes {q(src.excludes)}")
    steps = [f"rm -rf {q(venv)} {q(excludes)}"]
    if leave_out:
        steps.append(f"printf '%s\\n' {' '.join(q(p) for p in leave_out)} > {q(excludes)}")
    install = [f"{UV} pip install -q --python {q(venv)}/bin/python", *map(q, src.args())]
    steps += [
        f"UV_PYTHON_DOWNLOADS=never {UV} venv -q --python {q(python)} {q(venv)}",
        " ".join([*install, *exclude_args, *map(q, packages)]),
        f"printf '%s' {q(marker)} > {q(venv)}/{MARKER}",
    ]
    return steps


def marker_text(**what) -> str:
    return json.dumps(what, sort_keys=True)


def ensure_venv(
    name: str,
    venv: str,
    packages: list[str],
    src: PackageSource,
    ops: list[OperationMeta],
    *,
    python: str = "python3",
    leave_out: list[str] | None = None,
    parent: str | None = None,
) -> None:
    """Make sure ``venv`` holds exactly ``packages`` from ``src`` (no-op when it does)."""
    queued = current_run().uv_queued
    if host.name not in queued and not host.get_fact(File, path=UV):
        queued.add(host.name)
        ops.append(
            server.shell(name="Install uv", commands=[" && ".join(uv_bootstrap_commands(src))])
        )
    marker = marker_text(
        packages=packages, python=python, leave_out=leave_out or [], source=asdict(src)
    )
    if host.get_fact(TextFile, path=f"{venv}/{MARKER}") == marker:
        return
    if parent:
        ops.append(files.directory(name=f"{name}: parent directory", path=parent, mode="755"))
    steps = install_commands(venv, packages, src, python=python, leave_out=leave_out, marker=marker)
    ops.append(
        server.shell(
            name=f"{name}: {' '.join(packages)} into {venv}", commands=[" && ".join(steps)]
        )
    )
