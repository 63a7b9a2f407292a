"""Serving groups: the hosts that together run one multi-node server.

A multi-node recipe (``nodes: 2``) is one server on several hosts.  In the inventory
they are the hosts with the same ``serve_group`` (set it in their pyinfra group's data,
so a pyinfra group is a server): ranks follow inventory order unless a host sets
``node_rank``, and rank 0's ``group_address`` (default its ``ssh_hostname``) is every
member's ``master_addr``.  ``plan_groups`` works that out for every host before any
host is touched, renders each member's command for its rank, and turns a group that
does not fit its recipe (too few or too many hosts, mixed hardware, a rank twice) into
plan errors that name the group, its hosts and a fix, on every member: a group starts
all of its members or none.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from .catalog import Catalog, load
from .errors import Problem, ValidationError
from .multinode import Rendezvous, network_env, role_of
from .render import render

if TYPE_CHECKING:
    from .validate import HostPlan

# What every member must agree on: one server runs one configuration.  (Ports, NIC
# names and model paths may differ per host.)
UNIFORM = (
    "hardware",
    "recipe",
    "model_repo",
    "revision",
    "runtime",
    "image",
    "flags",
    "overlays",
    "master_addr",
    "dist_port",
)


@dataclass(frozen=True)
class GroupMember:
    host: str
    rank: int
    address: str  # on the group's network; rank 0's is everyone's master address

    @property
    def role(self) -> str:
        return role_of(self.rank)

    def to_json(self) -> dict[str, Any]:
        return {"host": self.host, "rank": self.rank, "role": self.role, "address": self.address}


@dataclass(frozen=True)
class ServeGroup:
    """One multi-node server as planned: who is which rank, where rank 0 is, and the
    ports it listens on for the others (the deploy checks those before starting)."""

    name: str
    recipe: str
    hardware: str
    form: str
    nodes: int
    master_addr: str
    rendezvous: tuple[Rendezvous, ...]
    members: tuple[GroupMember, ...]  # by rank

    @property
    def head(self) -> GroupMember:
        return self.members[0]

    def member(self, host: str) -> GroupMember:
        return next(m for m in self.members if m.host == host)

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "recipe": self.recipe,
            "hardware": self.hardware,
            "form": self.form,
            "nodes": self.nodes,
            "master_addr": self.master_addr,
            "rendezvous": [r.to_json() for r in self.rendezvous],
            "members": [m.to_json() for m in self.members],
        }


class Misfit(Exception):
    """A group that cannot be one server: ``field``, message and fix for every member."""

    def __init__(self, field: str, message: str, fix: str) -> None:
        super().__init__(message)
        self.field, self.message, self.fix = field, message, fix


def _names(plans: list[HostPlan]) -> str:
    return ", ".join(p.host for p in plans)


def _hosts(n: int) -> str:
    return f"{n} host" + ("" if n == 1 else "s")


def _check_members(name: str, members: list[HostPlan]) -> None:
    broken = [p for p in members if not p.ok or p.rendered is None]
    if broken:
        raise Misfit(
            "serve_group",
            f"serve group {name}: {_names(broken)} cannot be planned (its own errors), "
            "and a group starts all of its members or none",
            f"fix {_names(broken)}, or take it out of serve_group {name}",
        )
    for key in UNIFORM:
        values = {p.host: getattr(p.settings, key) for p in members}
        first = values[members[0].host]
        if any(v != first for v in values.values()):
            shown = ", ".join(f"{h}={v}" for h, v in values.items())
            raise Misfit(
                key,
                f"serve group {name} mixes {key}: {shown}",
                f"one server runs one configuration: give {_names(members)} the same {key} "
                f"(in the group's data), or move the odd host out of serve_group {name}",
            )


def _check_size(name: str, members: list[HostPlan], rid: str, hardware: str, nodes: int) -> None:
    have = len(members)
    if nodes == 1:
        raise Misfit(
            "serve_group",
            f"serve group {name} ({_names(members)}): recipe {rid} runs on one node",
            f"drop serve_group from {_names(members)}, or pick a multi-node recipe "
            "(llmfleet recipes list shows them as HARDWARE xN)",
        )
    if have < nodes:
        raise Misfit(
            "serve_group",
            f"serve group {name} has {_hosts(have)} ({_names(members)}) but {rid} runs on "
            f"{nodes} nodes: {nodes - have} missing",
            f"add {nodes - have} more {hardware} {_hosts(nodes - have)} with "
            f"serve_group={name} to the inventory",
        )
    if have > nodes:
        raise Misfit(
            "serve_group",
            f"serve group {name} has {_hosts(have)} ({_names(members)}) but {rid} runs on "
            f"{nodes} nodes",
            f"move {have - nodes} of them out of serve_group {name} (another serve_group "
            "name makes a second server)",
        )


def _ranks(name: str, members: list[HostPlan], nodes: int) -> dict[str, int]:
    """host -> rank: the ranks set by hand, the rest in inventory order.  (A rank outside
    the recipe's nodes already failed its host's own render.)"""
    fixed: dict[str, int] = {}
    for p in members:
        rank = p.settings.node_rank
        if rank is None:
            continue
        twice = [h for h, r in fixed.items() if r == rank]
        if twice:
            raise Misfit(
                "node_rank",
                f"serve group {name}: rank {rank} is set on both {twice[0]} and {p.host}",
                "give each host its own node_rank, or drop node_rank and let inventory "
                "order decide",
            )
        fixed[p.host] = rank
    free = iter(sorted(set(range(nodes)) - set(fixed.values())))
    return {p.host: fixed[p.host] if p.host in fixed else next(free) for p in members}


def _address(p: HostPlan) -> str:
    return p.settings.group_address or p.address


def _network_warnings(catalog: Catalog, p: HostPlan) -> list[Problem]:
    """Variables that need the host's IP (VLLM_HOST_IP, HCCL_IF_IP) and did not get one.
    (A missing interface is the deploy's to read from the host's facts.)"""
    assert p.recipe is not None and p.hardware is not None
    table = catalog.engines[catalog.recipe(p.recipe).engine]
    _, left_out = network_env(table, catalog.hw(p.hardware), p.settings)
    names = [n for n, lacking in left_out.items() if "node_ip" in lacking]
    if not names:
        return []
    return [
        Problem(
            p.host,
            "group_address",
            f"{', '.join(names)} left out: {p.host}'s group address "
            f"{_address(p)!r} is not an IP address",
            fix="set group_address to its IP on the serving group's network",
            severity="warning",
        )
    ]


def _plan_group(catalog: Catalog, name: str, members: list[HostPlan]) -> ServeGroup:
    _check_members(name, members)
    first = members[0]  # all agree on recipe, hardware and master_addr now
    assert first.recipe is not None and first.hardware is not None
    recipe = catalog.recipe(first.recipe)
    _check_size(name, members, recipe.id, first.hardware, recipe.nodes)
    ranks = _ranks(name, members, recipe.nodes)
    by_rank = sorted(members, key=lambda p: ranks[p.host])
    master = first.settings.master_addr or _address(by_rank[0])
    for p in members:
        p.settings = replace(
            p.settings, node_rank=ranks[p.host], master_addr=master, group_address=_address(p)
        )
        try:
            p.rendered = render(catalog, recipe, p.settings, p.host)
        except ValidationError as exc:
            p.problems.extend(exc.problems)
            raise Misfit(
                "serve_group",
                f"serve group {name}: {p.host} cannot be rendered as rank {ranks[p.host]}",
                f"fix {p.host}'s errors",
            ) from None
        p.problems.extend(_network_warnings(catalog, p))
    node = by_rank[0].rendered.node if by_rank[0].rendered else None
    return ServeGroup(
        name=name,
        recipe=recipe.id,
        hardware=first.hardware,
        form=recipe.multinode_form,
        nodes=recipe.nodes,
        master_addr=master,
        rendezvous=node.rendezvous if node else (),
        members=tuple(GroupMember(p.host, ranks[p.host], _address(p)) for p in by_rank),
    )


def plan_groups(plans: list[HostPlan], catalog: Catalog | None = None) -> None:
    """Resolve every serve group of ``plans`` in place: each member's settings get its
    rank, the master address and its group address, its command is rendered for that
    rank and ``plan.group`` is set; a misfit is an error on every member instead.
    ``catalog`` None: the process's own (``load()``), the one the deploy's roles use."""
    named: dict[str, list[HostPlan]] = {}
    for p in plans:
        if p.settings.serve_group:
            named.setdefault(p.settings.serve_group, []).append(p)
    if not named:
        return
    cat = catalog or load()
    for name, members in named.items():
        try:
            group = _plan_group(cat, name, members)
        except Misfit as bad:
            for p in members:
                p.problems.append(Problem(p.host, bad.field, bad.message, fix=bad.fix))
            continue
        for p in members:
            p.group = group


def group_map(hosts: Iterable[tuple[str, str | None]]) -> dict[str, list[str]]:
    """``{group: [member, ...]}`` in the order given, from ``(host, serve_group)`` pairs
    (hosts without a group left out): one pass, for a fleet of any size."""
    out: dict[str, list[str]] = {}
    for name, group in hosts:
        if group:
            out.setdefault(group, []).append(name)
    return out
