"""Run a deploy on pyinfra's @fake connector: canned command output stands in for hosts.

pyinfra runs in a fresh process (its CLI patches the interpreter with gevent).
``fail_host`` ends in ``exit 1``; the fake connector answers every command
with success, so each host is given a failing answer for that.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def run_deploy(tmp_path: Path, deploy: str, hosts: dict[str, tuple[dict, dict]]) -> dict:
    """``pyinfra INVENTORY DEPLOY -y --json`` on ``{name: (fake responses, host data)}``;
    the parsed JSON result, plus ``stdout``."""
    entries = [
        (
            f"@fake/{name}",
            {
                "fake_delay": 0,
                "fake_delay_jitter": 0,
                "fake_responses": {**responses, "; exit 1": {"success": False}},
                **data,
            },
        )
        for name, (responses, data) in hosts.items()
    ]
    inventory = tmp_path / "inventory.py"
    inventory.write_text(f"hosts = {entries!r}\n")
    proc = subprocess.run(
        [sys.executable, "-m", "pyinfra", str(inventory), deploy, "-y", "--json"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    start = proc.stdout.find("{")
    assert start >= 0, proc.stdout + proc.stderr
    result, _ = json.JSONDecoder().raw_decode(proc.stdout[start:])
    result["stdout"] = proc.stdout
    return result


def outcome(result: dict, host: str, names: dict[str, str] | None = None) -> dict[str, str]:
    """Operation (its key in ``names``, else its name) -> changed | no change | error,
    for the operations that ran on ``host``."""
    names = names or {}
    out = {}
    for op in result["results"]["operations"]:
        key = names.get(op["name"], op["name"])
        if host in op["error"]:
            out[key] = "error"
        elif host in op["no_change"]:
            out[key] = "no change"
        elif host in op["success"]:
            out[key] = "changed"
    return out
