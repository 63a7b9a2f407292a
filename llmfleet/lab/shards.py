"""A second lab repo of random "shards" for weight-pull tests and benchmarks, and the
counter that tells how many bytes the lab's Hub sent.

The tiny model (1.5 MB) is too small to interrupt a pull or to see what a
mirror saves; this repo is N shards of M MB of seeded random bytes, so the
same arguments give the same commit.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

from . import hub
from .services import mirrors_root

REPO = "llmfleet-lab/shards"


def build(shards: int = 8, shard_mb: int = 16, repo: str = REPO) -> dict[str, str]:
    """Make (or keep) ``repo`` in the lab Hub's mirrors; return its refs."""

    def write(work: Path) -> None:
        rnd = random.Random(20261124)
        for i in range(shards):
            name = f"model-{i + 1:05d}-of-{shards:05d}.safetensors"
            (work / name).write_bytes(rnd.randbytes(shard_mb << 20))
        (work / "config.json").write_text(json.dumps({"model_type": "qwen2", "shards": shards}))

    return hub.build_repo_from_files(mirrors_root(), repo, write, "shards", compression=0)


def hub_bytes_sent(bridge: str = "llmfl0") -> int:
    """Bytes the control machine sent onto the lab bridge (the lab Hub's uploads, plus a
    little SSH); host-to-host traffic is forwarded by the bridge and not counted."""
    return int(Path(f"/sys/class/net/{bridge}/statistics/tx_bytes").read_text())
