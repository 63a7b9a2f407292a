"""The swarm plan: computed on the control node, written to every member as JSON.

Why a plan and not a tracker or a daemon: the control node already knows the
whole fleet (every host's address, and from one fact per host whether its
snapshot is whole), so it can say once, in a file a person can read, who is
in the swarm and who fetches from upstream first.  The hosts then need only
to ask each other what pieces they hold (``files/scripts/llmfleet-swarm.py``).

- *members*: every host of the run that pulls the same snapshot with
  ``weights_swarm``, as ``http://ADDRESS:PORT`` of its peer server;
- *origins*: the members that fetch from the Hub or mirror first, each a
  share of the files (assigned on the hosts from the Hub's manifest, which
  the control node does not read).  When some member already holds the whole
  snapshot, there are none: everything comes from the members that have it,
  and the Hub sees no bytes at all;
- *dead_after_s*: a member that has not answered that long is gone, and its
  files go to the next origin; *grace_s*: how long a member that never
  answered is still waited for (they start within seconds of each other);
- *linger_s*: how long a finished member keeps serving the slower ones.
"""

from __future__ import annotations

import json
from dataclasses import dataclass


@dataclass(frozen=True)
class SwarmMember:
    host: str
    address: str
    needs: bool  # its snapshot is not whole yet
    port: int = 8099  # its peer server (weights_peer_port)


def origins(members: list[SwarmMember]) -> list[str]:
    """Who fetches from upstream: every member that needs the snapshot, unless one
    already holds it (then nobody: the Hub is not asked for bytes a member has)."""
    if not all(m.needs for m in members):
        return []
    return [m.host for m in members]


def swarm_plan(
    members: list[SwarmMember],
    me: str,
    piece_mb: int,
    *,
    dead_after_s: float = 10,
    grace_s: float = 30,
    linger_s: float = 900,
) -> dict:
    """The plan for member ``me`` (every member's differs only in ``me``/``bind``)."""
    ordered = sorted(members, key=lambda m: m.host)
    mine = next(m for m in ordered if m.host == me)
    return {
        "me": me,
        "bind": mine.address,
        "port": mine.port,
        "members": {m.host: f"http://{m.address}:{m.port}" for m in ordered},
        "origins": origins(ordered),
        "seeds": [m.host for m in ordered if not m.needs],
        "piece_bytes": piece_mb << 20,
        "dead_after_s": dead_after_s,
        "grace_s": grace_s,
        "linger_s": linger_s,
    }


def plan_json(plan: dict) -> str:
    return json.dumps(plan, indent=1, sort_keys=True)


def describe(plan: dict) -> str:
    """One line for the deploy's output: who is in, who fetches from upstream."""
    n = len(plan["members"])
    if plan["origins"]:
        first = f"first sources {', '.join(plan['origins'])}"
    else:
        first = f"everything from {', '.join(plan['seeds'])} (no Hub bytes)"
    return f"swarm of {n} host(s), {plan['piece_bytes'] >> 20} MiB pieces, {first}"
