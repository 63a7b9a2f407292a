"""What one pyinfra run knows across hosts: the fleet's plans and each host's record.

Kept on pyinfra's own ``State`` for the run (not in module globals), so the
plans computed once at prepare time, the records the roles fill in while
operations execute, and the summary printed at exit all see the same
objects, and a second run in the same process starts clean.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

from pyinfra.context import ctx_state

from llmfleet.outcome import HostRecord


@dataclass
class Run:
    """Per run: plans by host (computed once), records by host, fan-out needs."""

    plans: dict[str, Any] | None = None
    # what the control node resolved once for the fleet: (repo, revision, endpoint) ->
    # commit, (image, insecure registries) -> pinned image; or the LlmfleetError raised
    resolved: dict[tuple, Any] = field(default_factory=dict)
    records: dict[str, HostRecord] = field(default_factory=dict)
    # hosts that already have a "uv" install queued in this run
    uv_queued: set[str] = field(default_factory=set)
    # pyinfra prepares hosts in parallel greenlets (threading is gevent's there): the
    # first host plans the fleet while the others wait, so nothing is done twice
    lock: Any = field(default_factory=threading.Lock)
    # peer host name -> True once a host that copies from it was prepared
    peer_needed: dict[str, bool] = field(default_factory=dict)
    # swarm member -> whether its snapshot is not whole (filled while hosts prepare)
    swarm_needs: dict[str, bool] = field(default_factory=dict)
    title: str | None = None
    # serving group -> member -> its health gate's result, for the group's verdict
    group_results: dict[str, dict[str, dict]] = field(default_factory=dict)
    # serving group -> member -> the operations whose change restarts the whole group
    group_changes: dict[str, dict[str, list]] = field(default_factory=dict)
    # the fleet's monitoring plan (deploys/monitor.py), built once from every host's plan
    monitor: Any = None
    # the fleet as the router deploy plans it (llmfleet.router.fleet_plans), once per run
    router_plans: list[Any] | None = None
    # serving group -> its members in inventory order, from every host's settings parsed
    # once per run (a per-host walk over the inventory is N^2 settings parses)
    serve_groups: dict[str, list[str]] | None = None

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
