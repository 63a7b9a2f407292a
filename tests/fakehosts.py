"""Run a deploy on pyinfra's @fake connector: canned command output stands in for hosts.

pyinfra runs in a fresh process (its CLI patches the interpreter with gevent).
``fail_host`` ends in ``exit 1``; the fake connector answers every command
with success, so each host is given a failing answer for that.

The Hub variables of the test process (``HF_TOKEN``, ``HF_TOKEN_FILE``,
``HF_ENDPOINT``) are not passed on: a deploy sees only those a test gives.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HUB_ENV = ("HF_TOKEN", "HF_TOKEN_FILE", "HF_ENDPOINT")
STAT = "stat -c 'user=%U group=%G mode=%A atime=%X mtime=%Y ctime=%Z size=%s %N'"
# pyinfra --debug: the fake connector logs each command it answers, for the host it runs on
_RAN = re.compile(
    r"^ *\[pyinfra\.connectors\.fake\] \[fake\] simulating command on (\S+): (.*)$", re.M
)


def run_deploy(
    tmp_path: Path,
    deploy: str,
    hosts: dict[str, tuple[dict, dict]],
    *,
    env: dict[str, str] | None = None,
    commands: bool = False,
) -> dict:
    """``pyinfra INVENTORY DEPLOY -y --json`` on ``{name: (fake responses, host data)}``
    with ``env`` added to the environment; the parsed JSON result, plus ``stdout``,
    ``outcomes`` (the summary's per-host outcomes, from ``LLMFLEET_RESULTS``) and, with
    ``commands``, ``commands``: ``{host: [each command it was sent, in order]}``
    (see ``commands_sent``)."""
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
    outcomes = tmp_path / "outcomes.json"
    inherited = {k: v for k, v in os.environ.items() if k not in HUB_ENV}
    proc = subprocess.run(
        [sys.executable, "-m", "pyinfra", str(inventory), deploy, "-y", "--json"]
        + (["--debug"] if commands else []),
        cwd=ROOT,
        env={**inherited, "LLMFLEET_RESULTS": str(outcomes), **(env or {})},
        capture_output=True,
        text=True,
        timeout=120,
    )
    start = proc.stdout.find("{")
    assert start >= 0, proc.stdout + proc.stderr[-5000:]
    result, _ = json.JSONDecoder().raw_decode(proc.stdout[start:])
    result["stdout"] = proc.stdout
    result["outcomes"] = json.loads(outcomes.read_text()) if outcomes.exists() else {}
    if commands:
        result["commands"] = commands_sent(proc.stderr)
    return result


def commands_sent(log: str) -> dict[str, list[str]]:
    """``{host: [command, ...]}`` from a ``--debug`` log: facts, operations and the
    commands ``python.call`` functions run.  A multi-line command (a heredoc, a
    ``python3 -c`` script) is its first line: the log has no end marker, and a
    traceback printed next would read as its continuation."""
    sent: dict[str, list[str]] = {}
    for host, command in _RAN.findall(log):
        sent.setdefault(host, []).append(command.rstrip())
    return sent


def file_there(
    path: str, text: str | None = None, mode: str = "-rw-r--r--", owner: str = "root"
) -> dict[str, str]:
    """Fake responses for ``path`` present with ``mode`` (``ls -l`` style), owned by
    ``owner`` (user and group), holding exactly ``text`` (its content unknown when None)."""
    stat = f"user={owner} group={owner} mode={mode} atime=0 mtime=0 ctime=0 size=1 '{path}'"
    out = {f"{STAT} {path} ": stat}
    if text is not None:
        out[f"sha1sum {path} "] = f"{hashlib.sha1(text.encode()).hexdigest()}  {path}"
    return out


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
