"""Benchmark results kept with the release they measured, on the control node.

One JSON file per host and release (``<root>/<host>/<release>.json``) holds
every run of that release on that host, oldest first, each with its
workload, the client that measured it and the figures.  Releases are content
addresses (``llmfleet/manifest.py``), so a release that comes back after a
rollback finds its old figures, and "the previous release on the same host"
is a lookup, not a re-run.  Runs compare only when workload and client match.
"""

from __future__ import annotations

import json
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .benchmetrics import Metrics
from .benchspec import BenchParams


def default_root() -> Path:
    """``LLMFLEET_BENCH_DIR``, or ``~/.local/share/llmfleet/bench``."""
    env = os.environ.get("LLMFLEET_BENCH_DIR")
    if env:
        return Path(env)
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "llmfleet" / "bench"


@dataclass(frozen=True)
class BenchRun:
    """One run of the client against one host's release."""

    host: str
    release: str
    recipe: str
    hardware: str
    params: BenchParams
    metrics: Metrics
    client: dict[str, Any]
    endpoint: str
    time: float = field(default_factory=time.time)
    # output tok/s of every repeat when the run is the best of several (--repeat)
    repeats: tuple[float, ...] = ()

    def comparable(self, params: BenchParams, client_digest: str) -> bool:
        return self.params.key() == params.key() and self.client.get("digest") == client_digest

    def to_json(self) -> dict[str, Any]:
        return {
            "host": self.host,
            "release": self.release,
            "recipe": self.recipe,
            "hardware": self.hardware,
            "time": self.time,
            "date": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(self.time)),
            "endpoint": self.endpoint,
            "client": self.client,
            "params": self.params.to_json(),
            "metrics": self.metrics.to_json(),
            "repeats_output_tok_s": list(self.repeats),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> BenchRun:
        return cls(
            host=data["host"],
            release=data["release"],
            recipe=data.get("recipe", ""),
            hardware=data.get("hardware", ""),
            params=BenchParams.from_json(data["params"]),
            metrics=Metrics.from_json(data["metrics"]),
            client=data.get("client") or {},
            endpoint=data.get("endpoint", ""),
            time=float(data.get("time", 0)),
            repeats=tuple(data.get("repeats_output_tok_s") or ()),
        )


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "_", name)


def path_for(root: Path, host: str, release: str) -> Path:
    return Path(root) / _safe(host) / f"{_safe(release)}.json"


def load_runs(root: Path, host: str, release: str) -> list[BenchRun]:
    path = path_for(root, host, release)
    if not path.exists():
        return []
    return [BenchRun.from_json(r) for r in json.loads(path.read_text()).get("runs", [])]


def save(root: Path, run: BenchRun) -> Path:
    """Append ``run`` to its host's and release's file (written whole, then renamed)."""
    path = path_for(root, run.host, run.release)
    path.parent.mkdir(parents=True, exist_ok=True)
    runs = [r.to_json() for r in load_runs(root, run.host, run.release)] + [run.to_json()]
    doc = {"host": run.host, "release": run.release, "recipe": run.recipe, "runs": runs}
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(doc, indent=2) + "\n")
    tmp.replace(path)
    return path


def latest(
    root: Path, host: str, release: str, params: BenchParams, client_digest: str
) -> BenchRun | None:
    """The newest comparable run of ``release`` on ``host``."""
    found = [r for r in load_runs(root, host, release) if r.comparable(params, client_digest)]
    return found[-1] if found else None


def best(
    root: Path, host: str, release: str, params: BenchParams, client_digest: str
) -> BenchRun | None:
    """The comparable run of ``release`` on ``host`` with the highest output tok/s: what the
    rollout gate judges against (anything else on the machine only ever slows a run)."""
    found = [r for r in load_runs(root, host, release) if r.comparable(params, client_digest)]
    return max(found, key=lambda r: r.metrics.get("output_tok_s") or 0) if found else None


def previous(
    root: Path,
    host: str,
    release: str,
    params: BenchParams,
    client_digest: str,
    prefer: str | None = None,
) -> BenchRun | None:
    """The run of the release before ``release`` on ``host``: the one the host marks
    previous (``prefer``) when it was measured, else the newest other one measured."""
    if prefer and prefer != release:
        run = latest(root, host, prefer, params, client_digest)
        if run:
            return run
    folder = Path(root) / _safe(host)
    others = [
        r
        for f in (folder.glob("*.json") if folder.is_dir() else [])
        if f.stem != _safe(release)
        for r in load_runs(root, host, f.stem)
        if r.comparable(params, client_digest)
    ]
    return max(others, key=lambda r: r.time) if others else None
