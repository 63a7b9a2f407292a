"""A multi-node server's lifecycle, decided on the control node: which members a run must
touch together, when the whole group restarts, how a member is judged, when it reverts.

systemd cannot bind units across hosts, so the deploy treats a serving group
(``llmfleet/servegroup.py``) as one unit of work:

- a run targets all of a group's members or none (``missing_members``): half a
  group on a new release is a server that never forms;
- a release change on any member restarts every member, in the same step
  (``roles/group.py``: decided at run time from every member's operations), because a
  restarted rank cannot join ranks that kept running;
- each member's health gate judges it by its role (``Judge``): the head by HTTP and
  one completion, a worker by its process and its connection to rank 0;
- the group is healthy only when every member is (``verdict``), otherwise every
  member goes back to its previous release together;
- after the deploy, crashes are the group watchdog's (``files/scripts/
  llmfleet-group-watch.py``), which reads the group from the env file's
  ``LLMFLEET_GROUP_*`` variables (``group_env``) that every member's release carries;
- rollouts count a group as one unit of a batch (``batch_units``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from .multinode import HEAD, NodeRole
from .servegroup import ServeGroup

# the env-file variables the group watchdog (and an operator) read
ENV_GROUP = "LLMFLEET_GROUP"
ENV_ROLE = "LLMFLEET_GROUP_ROLE"
ENV_RANK = "LLMFLEET_GROUP_RANK"
ENV_RENDEZVOUS = "LLMFLEET_GROUP_RENDEZVOUS"
ENV_WORKERS = "LLMFLEET_GROUP_WORKERS"


def group_env(node: NodeRole | None, group: ServeGroup | None) -> dict[str, str]:
    """What a member's env file says about its group; nothing for a one-node server.

    The worker watches its connection to the rendezvous address(es); the head watches
    the connections of its workers, which it knows only in a serve_group (a rank set
    by hand has no list of the others, so its head watches nobody)."""
    if node is None:
        return {}
    env = {
        ENV_GROUP: node.group or "-",
        ENV_ROLE: node.role,
        ENV_RANK: str(node.rank),
        ENV_RENDEZVOUS: ",".join(f"{r.address}:{r.port}" for r in node.rendezvous),
    }
    if node.role == HEAD and group is not None:
        env[ENV_WORKERS] = ",".join(m.address for m in group.members if m.rank > 0)
    return env


@dataclass(frozen=True)
class Judge:
    """How a member's health gate decides it is serving: a head by HTTP and a completion
    on its port, a worker by its unit staying up with its engine connected to rank 0's
    address (on any port: vLLM's data-parallel ranks close the rendezvous port once they
    have met and talk over ports the engine picks)."""

    role: str
    connect: tuple[str, ...] = ()  # worker: rank 0's address its engine must be linked to

    @classmethod
    def of(cls, node: NodeRole | None) -> Judge:
        if node is None or node.role == HEAD:
            return cls(HEAD)
        return cls(node.role, tuple(dict.fromkeys(r.address for r in node.rendezvous)))

    @property
    def is_head(self) -> bool:
        return self.role == HEAD


def missing_members(members: Iterable[str], targeted: Iterable[str]) -> list[str]:
    """The members a run leaves out (``--limit``): a group deploys whole or not at all."""
    chosen = set(targeted)
    return [m for m in members if m not in chosen]


def left_out_error(host: str, group: str, members: list[str], targeted: Iterable[str]) -> str:
    """The error for every targeted member when a run (serve or rollback) leaves out part
    of its group, with the ``--limit`` that fixes it; empty when the run takes it whole."""
    missing = missing_members(members, targeted)
    if not missing:
        return ""
    return (
        f"{host}: serve_group: {group} is one server on {', '.join(members)}, and this run "
        f"leaves out {', '.join(missing)} (fix: target the whole group: "
        f"{' '.join('--limit ' + m for m in members)})"
    )


def verdict(results: Mapping[str, Mapping]) -> list[str]:
    """The members whose gate failed (a missing result is a failure): the group is
    healthy only when this is empty."""
    return [h for h, r in results.items() if not (r and r.get("ok"))]


def batch_units(hosts: list[str], group_of: Mapping[str, str | None]) -> list[list[str]]:
    """``hosts`` as rollout units, in order: a one-node server alone, a serving group's
    members together (at the place of its first member)."""
    units: list[list[str]] = []
    by_group: dict[str, list[str]] = {}
    for h in hosts:
        name = group_of.get(h)
        if not name:
            units.append([h])
        elif name in by_group:
            by_group[name].append(h)
        else:
            by_group[name] = [h]
            units.append(by_group[name])
    return units
