"""Health role: bounded wait for /health, /v1/models and one real completion.

It runs only when the deploy changed something (so a quiet re-run stays
quiet); otherwise the summary reports what a read-only probe saw.  Results
are kept for the end-of-run summary.
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Callable
from pathlib import Path

from pyinfra import host
from pyinfra.api import deploy
from pyinfra.api.operation import OperationMeta
from pyinfra.operations import files, python
from pyinfra.operations.util import any_changed

from llmfleet.render import UNIT_NAME

from .facts import HttpJson
from .release import activate_commands

SCRIPTS = Path(__file__).resolve().parent.parent / "files" / "scripts"
RESULTS: dict[str, dict] = {}


def _probe(port: int, model: str, timeout: int) -> dict:
    cmd = (
        f"python3 /opt/llmfleet/bin/llmfleet-health.py --port {int(port)} "
        f"--model {shlex.quote(model)} --unit {UNIT_NAME} --timeout {int(timeout)}"
    )
    _, out = host.run_shell_command(cmd)
    try:
        return json.loads(out.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        return {"ok": False, "error": out.stderr or out.stdout}


def gate(
    port: int,
    model: str,
    timeout: int,
    revert: dict | None = None,
    release: str | None = None,
    restart: bool | Callable[[], bool] = False,
) -> None:
    """Health-gate what was just started; if it fails and ``revert`` names the release
    that ran before ({"id", "port", "model"}), put that one back and say so."""
    if callable(restart):  # decided at run time: did the release change?
        restart = restart()
    if restart:  # a failed restart is judged below like any unhealthy release
        host.run_shell_command(f"systemctl restart {UNIT_NAME}.service")
    result = _probe(port, model, timeout)
    RESULTS[host.name] = {**result, "release": release}
    if result.get("ok"):
        return
    tail = "\n".join(result.get("journal", "").splitlines()[-15:])
    failure = (
        f"{host.name}: release {release or '(new)'} not healthy at "
        f"{result.get('stage', '?')}: {result.get('error')}"
    )
    if revert:
        host.run_shell_command(" && ".join(activate_commands(revert["id"])))
        back = _probe(revert["port"], revert["model"], timeout)
        state = "healthy again" if back.get("ok") else f"NOT healthy either: {back.get('error')}"
        failure += f"; rolled back to release {revert['id']} ({state})"
        RESULTS[host.name] = {**result, "error": failure, "rolled_back": revert["id"]}
    raise RuntimeError(f"{failure}\n--- last journal lines of the failed release ---\n{tail}")


@deploy("Health")
def health(
    port: int,
    model: str,
    changed: list[OperationMeta],
    timeout: int = 900,
    revert: dict | None = None,
    release: str | None = None,
    restart: bool | Callable[[], bool] = False,
) -> OperationMeta:
    script = files.put(
        name="Health script",
        src=str(SCRIPTS / "llmfleet-health.py"),
        dest="/opt/llmfleet/bin/llmfleet-health.py",
        mode="755",
    )
    models = host.get_fact(HttpJson, url=f"http://127.0.0.1:{int(port)}/v1/models")
    if models is not None:
        ids = [m.get("id") for m in models.get("data", [])]
        RESULTS[host.name] = {"ok": model in ids, "probe": True, "models": ids}
    gate_if = {"_if": any_changed(script, *changed)} if models is not None else {}
    return python.call(
        name="Wait until serving (health, models, one completion)",
        function=gate,
        port=port,
        model=model,
        timeout=timeout,
        revert=revert,
        release=release,
        restart=restart,
        **gate_if,
    )
