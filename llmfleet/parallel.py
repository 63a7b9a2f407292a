"""Parallelism read back from a recipe's flags, and whether the weights fit.

The numbers come from the flags themselves (not from a second copy in the
recipe) so an override such as ``flag.--tp=16`` is checked the same way.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from . import args as argmod

USABLE_WHEN_NO_FRACTION = 0.9


@dataclass(frozen=True)
class Parallelism:
    tp: int
    dp: int
    pp: int
    expert_parallel: bool
    dp_attention: bool
    nodes: int

    @property
    def world(self) -> int:
        """Devices the engine uses in all; DP attention lives inside the TP group."""
        dp = 1 if self.dp_attention else self.dp
        return self.tp * self.pp * dp

    @property
    def per_node(self) -> int:
        return math.ceil(self.world / self.nodes)

    def describe(self) -> str:
        parts = [f"tp={self.tp}"]
        if self.dp > 1:
            parts.append(f"dp={self.dp}" + (" (attention)" if self.dp_attention else ""))
        if self.pp > 1:
            parts.append(f"pp={self.pp}")
        if self.expert_parallel:
            parts.append("ep")
        parts.append(f"nodes={self.nodes}")
        return " ".join(parts)


def _int_of(flags: list[argmod.Flag], names: list[str], default: int = 1) -> int:
    found = argmod.find(flags, names)
    if not found or not found[1]:
        return default
    return int(found[1][0])


def parallelism(flags: list[argmod.Flag], table: dict[str, Any], nodes: int) -> Parallelism:
    pf = table["parallel_flags"]
    return Parallelism(
        tp=_int_of(flags, pf["tp"]),
        dp=_int_of(flags, pf["dp"]),
        pp=_int_of(flags, pf["pp"]),
        expert_parallel=argmod.find(flags, table["expert_parallel_flags"]) is not None,
        dp_attention=argmod.find(flags, table["dp_within_tp_flags"]) is not None,
        nodes=nodes,
    )


@dataclass(frozen=True)
class MemoryFit:
    weights_gb: float
    shards: int
    per_device_gb: float
    usable_gb: float
    fraction: float

    @property
    def fits(self) -> bool:
        return self.per_device_gb <= self.usable_gb

    def nodes_needed(self, devices_per_host: int) -> int:
        """Nodes of this hardware whose devices would hold one copy of the weights."""
        per_node_capacity = devices_per_host * self.usable_gb
        return max(1, math.ceil(self.weights_gb / per_node_capacity))


def memory_fit(
    par: Parallelism,
    flags: list[argmod.Flag],
    table: dict[str, Any],
    weights_gb: float,
    device_memory_gb: float,
) -> MemoryFit:
    """Weights per device against the memory the engine is allowed to take.

    Expert parallelism shards experts over DP ranks in vLLM; otherwise every
    DP replica holds a full copy, so only TP x PP divide the weights.
    """
    shards = par.tp * par.pp
    if par.expert_parallel and table.get("dp_shards_weights_with_ep") and not par.dp_attention:
        shards *= par.dp
    found = argmod.find(flags, table["memory_fraction_flags"])
    fraction = (
        float(found[1][0])
        if found and found[1]
        else table.get("default_memory_fraction", USABLE_WHEN_NO_FRACTION)
    )
    return MemoryFit(
        weights_gb=weights_gb,
        shards=shards,
        per_device_gb=round(weights_gb / shards, 1),
        usable_gb=round(device_memory_gb * fraction, 1),
        fraction=fraction,
    )
