"""One node of a multi-node server: its flags, network environment, rendezvous ports and
role, for one rank.

Everything here is the engine file's data (``multinode``, ``multinode_dp``,
``network_env``) and the hardware profile's (``network_env``), put together for one
rank, so ``recipes render --rank N``, ``llmfleet plan`` and the deploy agree.  Which
host is which rank, and rank 0's address, are the serving group's business
(``llmfleet/servegroup.py``); a host outside a group says them itself
(``node_rank``, ``master_addr``).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Any, NoReturn

from . import args as argmod
from .catalog import PLACEHOLDER, Hardware, Recipe
from .errors import Problem, ValidationError
from .parallel import parallelism
from .settings import Settings

NNODES, DATA_PARALLEL = "nnodes", "data-parallel"
# Rank 0 serves the API and is judged by HTTP and a completion; the other ranks are
# headless (vLLM) or run only a stub /health (SGLang), so they are judged by their
# process and its connection to rank 0.
HEAD, WORKER = "head", "worker"
UNKNOWN_MASTER = "<master-addr>"
Flags = list[argmod.Flag]
Table = dict[str, Any]  # an engine file


def role_of(rank: int) -> str:
    return HEAD if rank == 0 else WORKER


@dataclass(frozen=True)
class Rendezvous:
    """A port rank 0 listens on for the other nodes: it must be free on the head and
    reachable from every worker before the group starts."""

    flag: str  # the engine flag that carries it (what to look for in the argv)
    address: str
    port: int

    def to_json(self) -> dict[str, Any]:
        return {"flag": self.flag, "address": self.address, "port": self.port}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Rendezvous:
        return cls(str(data["flag"]), str(data["address"]), int(data["port"]))


@dataclass(frozen=True)
class NodeRole:
    """One host's place in a multi-node server: what a later deploy step needs to start
    the group in order, judge each member and check the rendezvous ports."""

    group: str | None  # the serve_group; None: ranks and master_addr set by hand
    form: str  # NNODES or DATA_PARALLEL
    nodes: int
    rank: int
    master_addr: str | None
    rendezvous: tuple[Rendezvous, ...] = ()

    @property
    def role(self) -> str:
        return role_of(self.rank)

    def to_json(self) -> dict[str, Any]:
        return {
            "group": self.group,
            "form": self.form,
            "nodes": self.nodes,
            "rank": self.rank,
            "role": self.role,
            "master_addr": self.master_addr,
            "rendezvous": [r.to_json() for r in self.rendezvous],
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> NodeRole:
        return cls(
            group=data.get("group"),
            form=str(data.get("form", NNODES)),
            nodes=int(data.get("nodes", 1)),
            rank=int(data.get("rank", 0)),
            master_addr=data.get("master_addr"),
            rendezvous=tuple(Rendezvous.from_json(r) for r in data.get("rendezvous", [])),
        )


def _refuse(host: str, field: str, message: str, fix: str) -> NoReturn:
    raise ValidationError([Problem(host, field, message, fix=fix)])


def _port(flags: Flags, flag: str | None, dep: Settings, default: int) -> int:
    """``dist_port``, else the value the recipe (or a flag override) gives, else the
    engine's default."""
    found = argmod.find(flags, [flag]) if flag else None
    return dep.dist_port or (int(found[1][0]) if found and found[1] else default)


def _nnodes(
    flags: Flags, table: Table, nodes: int, rank: int, dep: Settings, host: str
) -> tuple[Flags, Rendezvous]:
    """One engine over all nodes: --nnodes/--node-rank/--master-addr (the guides' form)."""
    mn = table["multinode"]
    master = dep.master_addr or UNKNOWN_MASTER
    port_flag = mn["master_port_flag"]
    port = _port(flags, port_flag, dep, mn["master_port"])
    extra = [
        (mn["nnodes"], [str(nodes)]),
        (mn["node_rank"], [str(rank)]),
        (mn["master_addr"], [master if port_flag else f"{master}:{port}"]),
    ]
    if port_flag and dep.dist_port:
        extra.append((port_flag, [str(port)]))
    if rank > 0:
        extra += [(name, []) for name in mn["worker_only"]]
    return argmod.merge(flags, extra), Rendezvous(port_flag or mn["master_addr"], master, port)


def _data_parallel(
    flags: Flags, table: Table, nodes: int, rank: int, dep: Settings, host: str
) -> tuple[Flags, Rendezvous]:
    """Each node runs its share of the recipe's DP ranks; rank 0 serves the API."""
    dp_table = table["multinode_dp"]
    size = parallelism(flags, table, nodes).dp
    if size % nodes:
        _refuse(
            host,
            "parallelism",
            f"data-parallel size {size} does not split over {nodes} nodes",
            f"set the recipe's data-parallel size to a multiple of {nodes} (the total)",
        )
    local = size // nodes
    master = dep.master_addr or UNKNOWN_MASTER
    port = _port(flags, dp_table["rpc_port"], dep, dp_table["default_rpc_port"])
    extra = [
        (dp_table["size_local"], [str(local)]),
        (dp_table["address"], [master]),
        (dp_table["rpc_port"], [str(port)]),
    ]
    if rank > 0:
        extra.append((dp_table["start_rank"], [str(rank * local)]))
        extra += [(name, []) for name in dp_table["worker_only"]]
    return argmod.merge(flags, extra), Rendezvous(dp_table["rpc_port"], master, port)


# how each form (a recipe's multinode_form) adds its flags
FORMS = {NNODES: _nnodes, DATA_PARALLEL: _data_parallel}


def node_flags(
    flags: Flags, table: Table, recipe: Recipe, rank: int, dep: Settings, host: str
) -> tuple[Flags, NodeRole | None]:
    """``flags`` with this rank's multi-node flags, and its role (None: one node)."""
    nodes = recipe.nodes
    if nodes <= 1:
        return flags, None
    if not 0 <= rank < nodes:
        _refuse(
            host,
            "node_rank",
            f"{rank} is outside 0..{nodes - 1}",
            f"a rank from 0 to {nodes - 1}, or none in a serve_group (inventory order)",
        )
    flags, port = FORMS[recipe.multinode_form](flags, table, nodes, rank, dep, host)
    node = NodeRole(dep.serve_group, recipe.multinode_form, nodes, rank, dep.master_addr, (port,))
    return flags, node


def node_ip(address: str | None) -> str | None:
    """``address`` when it is an IP literal: VLLM_HOST_IP and HCCL_IF_IP take no name."""
    if not address:
        return None
    try:
        return str(ipaddress.ip_address(address))
    except ValueError:
        return None


def network_env(
    table: Table, hw: Hardware, dep: Settings
) -> tuple[dict[str, str], dict[str, list[str]]]:
    """(the variables this node sets, {name left out: the values it lacks}).

    The engine's entries (Gloo, VLLM_HOST_IP) and the hardware's (NCCL, HCCL) over the
    host's ``network_interface`` and its group address; an entry whose value is unknown
    is left out, so the engine falls back to its own choice (and the plan can say so).
    """
    values = {"network_interface": dep.network_interface, "node_ip": node_ip(dep.group_address)}
    out: dict[str, str] = {}
    left_out: dict[str, list[str]] = {}
    for name, template in {**(table.get("network_env") or {}), **hw.network_env}.items():
        lacking = [n for n in PLACEHOLDER.findall(template) if not values.get(n)]
        if lacking:
            left_out[name] = lacking
        else:
            out[name] = PLACEHOLDER.sub(lambda m: str(values[m.group(1)]), template)
    return out, left_out
