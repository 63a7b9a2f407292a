"""Health role: bounded wait for /health, /v1/models and one real completion.

It runs only when the deploy changed something (so a quiet re-run stays
quiet); otherwise the summary reports what a read-only probe saw.  The probe
and the gate both send the server's API key when it has one.  Results go to
the run's host record (``roles/run.py``) for the end-of-run summary.
"""

from __future__ import annotations

import json
import shlex
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from pyinfra import host
from pyinfra.api import deploy
from pyinfra.api.operation import OperationMeta
from pyinfra.operations import files, python
from pyinfra.operations.util import any_changed

from llmfleet.grouplife import Judge
from llmfleet.hostpaths import HEALTH_SCRIPT, UNIT_NAME
from llmfleet.manifest import ReleaseManifest

from .facts import ServedModels
from .release import activate_commands
from .run import record

SCRIPTS = Path(__file__).resolve().parent.parent / "files" / "scripts"


@dataclass(frozen=True)
class Target:
    """What the gate waits for: a release serving ``model`` on ``port``."""

    release: str
    port: int
    model: str
    key_env: str | None = None

    @classmethod
    def of(cls, m: ReleaseManifest) -> Target:
        return cls(m.id, m.port, m.served_name, m.api_key_env)


def probe_command(t: Target, timeout: int, judge: Judge | None = None) -> str:
    """The host-side gate within ``timeout``: health, model list and one completion for a
    head (or a one-node server); for a headless worker, its unit and its connection to
    rank 0 (``llmfleet/grouplife.py``)."""
    key = f" --key-env {shlex.quote(t.key_env)}" if t.key_env else ""
    connect = "".join(f" --connect {shlex.quote(c)}" for c in (judge.connect if judge else ()))
    return (
        f"python3 {HEALTH_SCRIPT} --port {int(t.port)} --model {shlex.quote(t.model)} "
        f"--unit {UNIT_NAME} --timeout {int(timeout)}{key}{connect}"
    )


def probe(command: str) -> dict:
    """Run the health script on the host; its last line is the verdict as JSON."""
    _, out = host.run_shell_command(command)
    try:
        return json.loads(out.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        return {"ok": False, "error": out.stderr or out.stdout}


def gate(
    target: Target,
    timeout: int,
    revert: Target | None = None,
    restart: bool | Callable[[], bool] = False,
) -> None:
    """Health-gate what was just started; if it fails and ``revert`` names the release
    that ran before, put that one back and say so."""
    rec = record(host.name)
    began = time.monotonic()
    if callable(restart):  # decided at run time: did the release change?
        restart = restart()
    if restart:  # a failed restart is judged below like any unhealthy release
        host.run_shell_command(f"systemctl restart {UNIT_NAME}.service")
    result = probe(probe_command(target, timeout))
    rec.timings["health_s"] = round(time.monotonic() - began, 1)
    rec.health = {**result, "release": target.release}
    if result.get("ok"):
        return
    tail = "\n".join(result.get("journal", "").splitlines()[-15:])
    failure = (
        f"{host.name}: release {target.release} not healthy at "
        f"{result.get('stage', '?')}: {result.get('error')}"
    )
    if revert:
        host.run_shell_command(" && ".join(activate_commands(revert.release)))
        back = probe(probe_command(revert, timeout))
        state = "healthy again" if back.get("ok") else f"NOT healthy either: {back.get('error')}"
        failure += f"; rolled back to release {revert.release} ({state})"
        rec.health = {**result, "error": failure, "rolled_back": revert.release}
    raise RuntimeError(f"{failure}\n--- last journal lines of the failed release ---\n{tail}")


def served_now(target: Target) -> dict | None:
    """What the server lists right now (read-only), as the summary's probe result for a
    run that changes nothing; None when nothing answers."""
    models = host.get_fact(ServedModels, port=target.port, key_env=target.key_env)
    if models is None:
        return None
    return {"ok": target.model in models, "probe": True, "models": models}


def health_script() -> OperationMeta:
    """The gate's script on the host (it also judges workers and serves the watchdog)."""
    return files.put(
        name="Health script",
        src=str(SCRIPTS / "llmfleet-health.py"),
        dest=HEALTH_SCRIPT,
        mode="755",
    )


@deploy("Health")
def health(
    target: Target,
    changed: list[OperationMeta],
    timeout: int = 900,
    revert: Target | None = None,
    restart: bool | Callable[[], bool] = False,
) -> OperationMeta:
    script = health_script()
    seen = served_now(target)
    if seen is not None:
        record(host.name).health = seen
    gate_if = {"_if": any_changed(script, *changed)} if seen is not None else {}
    return python.call(
        name="Wait until serving (health, models, one completion)",
        function=gate,
        target=target,
        timeout=timeout,
        revert=revert,
        restart=restart,
        **gate_if,
    )
