"""Weights role: one pinned snapshot per (repo, commit) in the host's shared cache.

The revision is resolved to a commit hash once, on the control node, so every
host pulls exactly the same bytes even while ``main`` moves.  The token comes
only from the control node's environment (HF_TOKEN) or a secret file
(HF_TOKEN_FILE) and reaches the host as a 0600 file, never in argv or logs.
"""

from __future__ import annotations

import re
import shlex
from io import StringIO
from pathlib import Path

from pyinfra import host
from pyinfra.api import deploy
from pyinfra.api.operation import OperationMeta
from pyinfra.operations import files, server

from llmfleet.hubapi import control_token, resolve_commit  # noqa: F401 (re-exported)

from .facts import TextFile

SCRIPTS = Path(__file__).resolve().parent.parent / "files" / "scripts"
TOKEN_PATH = "/etc/llmfleet/hf-token"


def snapshot_dir(hf_home: str, repo: str, commit: str) -> str:
    return f"{hf_home}/hub/models--{repo.replace('/', '--')}/snapshots/{commit}"


def marker_path(hf_home: str, repo: str, commit: str) -> str:
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", repo)
    return f"{hf_home}/llmfleet/{safe}@{commit}.complete"


@deploy("Model weights")
def weights(
    repo: str,
    commit: str,
    hf_home: str,
    python: str,
    endpoint: str | None,
    ops: list[OperationMeta],
    workers: int = 8,
) -> None:
    marker = marker_path(hf_home, repo, commit)
    if host.get_fact(TextFile, path=marker):
        return
    token = control_token()
    ops.append(files.directory(name="Weights cache", path=f"{hf_home}/llmfleet", mode="755"))
    ops.append(
        files.put(
            name="Fetch script",
            src=str(SCRIPTS / "llmfleet-fetch.py"),
            dest="/opt/llmfleet/bin/llmfleet-fetch.py",
            mode="755",
        )
    )
    env = {"HF_HUB_DISABLE_TELEMETRY": "1"}
    if endpoint:
        env["HF_ENDPOINT"] = endpoint
    if token:
        ops.append(
            files.put(
                name="Hub token (0600)",
                src=StringIO(token),
                dest=TOKEN_PATH,
                mode="600",
                user="root",
                group="root",
            )
        )
        env["HF_TOKEN_PATH"] = TOKEN_PATH
    prefix = " ".join(f"{k}={shlex.quote(v)}" for k, v in env.items())
    cmd = (
        f"{prefix} {python} /opt/llmfleet/bin/llmfleet-fetch.py --repo {shlex.quote(repo)} "
        f"--revision {commit} --cache-dir {hf_home}/hub --marker {marker} "
        f"--workers {int(workers)}"
    )
    ops.append(server.shell(name=f"Pull {repo}@{commit[:12]}", commands=[cmd]))
