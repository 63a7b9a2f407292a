"""Lab: what a serve run that changes nothing costs per host does not grow with the
fleet.  Light hosts (``llmfleet lab up --light N``: systemd and sshd, the STAND-IN stub
engine); SSH commands are counted by each host's own sshd, not estimated.

1 host, then 6 hosts, each from a fresh lab: a first serve deploy, then a second
one, which must change nothing (every host "already serving", on the same release)
and send each host exactly as many SSH commands at 6 hosts as at 1.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from llmfleet.lab.hosts import ssh_counts

from .labkit import fresh_lab, run_pyinfra

pytestmark = pytest.mark.lab
INVENTORY = "inventories/lab_light.py"
QUIET = "already serving (no change, not restarted)"


def _serve(tmp: Path, name: str) -> tuple[dict, float]:
    results = tmp / f"{name}.json"
    began = time.monotonic()
    proc = run_pyinfra(
        "deploys/serve.py", inventory=INVENTORY, env={"LLMFLEET_RESULTS": str(results)}
    )
    seconds = time.monotonic() - began
    assert proc.returncode == 0, proc.stdout[-5000:]
    return json.loads(results.read_text()), seconds


def _noop_sessions(n: int, tmp: Path) -> dict[str, int]:
    """SSH commands per host of the no-op serve run on a fresh ``n``-host light lab."""
    with fresh_lab(n, light=True) as state:
        first, _ = _serve(tmp, f"first-{n}")
        assert {r["status"] for r in first.values()} == {"healthy"}, first
        before = {h["name"]: ssh_counts(h) for h in state["hosts"]}
        again, seconds = _serve(tmp, f"again-{n}")
        after = {h["name"]: ssh_counts(h) for h in state["hosts"]}
        for name, row in again.items():
            assert (row["status"], row["detail"]) == ("healthy", QUIET), row
            assert row["release"] == first[name]["release"]
        sessions = {h: after[h]["sessions"] - before[h]["sessions"] for h in after}
        logins = {h: after[h]["logins"] - before[h]["logins"] for h in after}
        assert set(logins.values()) == {1}, logins  # one connection per host per run
        print(f"\n{n} light hosts: no-op serve {seconds:.1f}s, SSH commands per host {sessions}")
        return sessions


def test_a_noop_serve_costs_each_host_the_same_at_1_and_6_hosts(tmp_path: Path) -> None:
    assert os.geteuid() == 0
    one = _noop_sessions(1, tmp_path)
    six = _noop_sessions(6, tmp_path)
    assert len(set(six.values())) == 1, six
    assert set(one.values()) == set(six.values()), (one, six)
