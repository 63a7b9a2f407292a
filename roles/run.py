"""What one pyinfra run knows across hosts: the fleet's plans and each host's record.

Kept on pyinfra's own ``State`` for the run (not in module globals), so the
plans computed once at prepare time, the records the roles fill in while
operations execute, and the summary printed at exit all see the same
objects, and a second run in the same process starts clean.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pyinfra.context import ctx_state

from llmfleet.outcome import HostRecord


@dataclass
class Run:
    """Per run: plans by host (computed once), records by host, fan-out needs."""

    plans: dict[str, Any] | None = None
    records: dict[str, HostRecord] = field(default_factory=dict)
    # peer host name -> True once a host that copies from it was prepared
    peer_needed: dict[str, bool] = field(default_factory=dict)
    title: str | None = None

    def record(self, host_name: str) -> HostRecord:
        return self.records.setdefault(host_name, HostRecord())


def current_run() -> Run:
    state = ctx_state.get()
    run = getattr(state, "llmfleet_run", None)
    if run is None:
        run = Run()
        state.llmfleet_run = run
    return run


def record(host_name: str) -> HostRecord:
    return current_run().record(host_name)
