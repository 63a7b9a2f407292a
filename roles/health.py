"""Health role: bounded wait for /health, /v1/models and one real completion.

It runs only when the deploy changed something (so a quiet re-run stays
quiet); otherwise the summary reports what a read-only probe saw.  Results
are kept for the end-of-run summary.
"""

from __future__ import annotations

import json
import shlex
from pathlib import Path

from pyinfra import host
from pyinfra.api import deploy
from pyinfra.api.operation import OperationMeta
from pyinfra.operations import files, python
from pyinfra.operations.util import any_changed

from llmfleet.render import UNIT_NAME

from .facts import HttpJson

SCRIPTS = Path(__file__).resolve().parent.parent / "files" / "scripts"
RESULTS: dict[str, dict] = {}


def _check(port: int, model: str, timeout: int) -> None:
    cmd = (
        f"python3 /opt/llmfleet/bin/llmfleet-health.py --port {int(port)} "
        f"--model {shlex.quote(model)} --unit {UNIT_NAME} --timeout {int(timeout)}"
    )
    ok, out = host.run_shell_command(cmd)
    try:
        result = json.loads(out.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        result = {"ok": False, "error": out.stderr or out.stdout}
    RESULTS[host.name] = result
    if not result.get("ok"):
        tail = "\n".join(result.get("journal", "").splitlines()[-15:])
        raise RuntimeError(
            f"{host.name}: not healthy at {result.get('stage', '?')}: "
            f"{result.get('error')}\n--- last journal lines ---\n{tail}"
        )


@deploy("Health")
def health(port: int, model: str, changed: list[OperationMeta], timeout: int = 900) -> None:
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
    gate = {"_if": any_changed(script, *changed)} if models is not None else {}
    python.call(
        name="Wait until serving (health, models, one completion)",
        function=_check,
        port=port,
        model=model,
        timeout=timeout,
        **gate,
    )
