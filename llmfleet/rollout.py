"""Rolling deploys: batches of hosts, a failure threshold that stops the rollout.

pyinfra's own ``_serial``/``--serial`` either waits for every host before it
checks failures or goes one host at a time, so batching lives here: each batch
is one ``pyinfra INVENTORY DEPLOY --limit h1 --limit h2 ...`` run (the deploy itself
health-gates and reverts each host), its per-host results come back through
the summary's results file, and the rollout stops once more hosts failed than
``max_fail`` allows, leaving the untouched batches on what they run.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from .errors import LlmfleetError
from .outcome import GOOD, Status


def batches(hosts: list[str], size: str) -> list[list[str]]:
    """Split ``hosts`` into batches of ``size`` hosts, or ``N%`` of the fleet (at least 1)."""
    text = str(size).strip()
    try:
        n = math.ceil(len(hosts) * float(text[:-1]) / 100) if text.endswith("%") else int(text)
    except ValueError as exc:
        raise LlmfleetError(
            f"--batch {size!r}: use a host count (2) or a percentage (25%)"
        ) from exc
    n = max(1, n)
    return [hosts[i : i + n] for i in range(0, len(hosts), n)]


def fail_limit(total: int, max_fail: str) -> int:
    """How many failed hosts are tolerated: a count, or ``N%`` of the fleet (rounded down)."""
    text = str(max_fail).strip()
    if text.endswith("%"):
        return int(total * float(text[:-1]) / 100)
    return int(text)


@dataclass
class Rollout:
    done: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)
    stopped: bool = False


Runner = Callable[[list[str]], dict[str, dict]]


class BatchHook(Protocol):
    """Called around each batch (the benchmark gate, ``llmfleet/benchgate.py``): ``after``
    may turn a host's good result into a failure (it put the host back itself)."""

    def before(self, batch: list[str]) -> None: ...

    def after(self, batch: list[str], results: dict[str, dict]) -> dict[str, dict]: ...


def roll(
    hosts: list[str],
    size: str,
    max_fail: str,
    run: Runner,
    say: Callable[[str], None] = print,
    hook: BatchHook | None = None,
) -> Rollout:
    """Run ``run(batch)`` batch by batch; stop when failures exceed the threshold."""
    out = Rollout()
    limit = fail_limit(len(hosts), max_fail)
    plan = batches(hosts, size)
    for i, batch in enumerate(plan, 1):
        say(f"batch {i}/{len(plan)}: {', '.join(batch)}")
        if hook:
            hook.before(batch)
        results = run(batch)
        if hook:
            results = hook.after(batch, results)
        for h in batch:
            status = results.get(h, {}).get("status", Status.FAILED.value)
            if status in {s.value for s in GOOD}:
                out.done.append(h)
            else:
                out.failed[h] = f"{status}: {results.get(h, {}).get('detail', 'no result')}"
        if len(out.failed) > limit:
            out.stopped = True
            out.skipped = [h for b in plan[i:] for h in b]
            say(
                f"stopping: {len(out.failed)} failed host(s) > allowed {limit}; "
                f"not touched: {', '.join(out.skipped) or 'none'}"
            )
            break
    return out


def limit_args(hosts: list[str]) -> list[str]:
    """pyinfra's ``--limit`` takes one pattern each (no commas): ``--limit a --limit b``."""
    return [a for h in hosts for a in ("--limit", h)]


def pyinfra_runner(inventory: str, deploy: str, extra: list[str], cwd: Path) -> Runner:
    """A Runner that runs one pyinfra process per batch and reads its results file."""

    def run(batch: list[str]) -> dict[str, dict]:
        with tempfile.TemporaryDirectory() as tmp:
            results = Path(tmp) / "results.json"
            env = {**os.environ, "LLMFLEET_RESULTS": str(results)}
            argv = [
                sys.executable,
                "-m",
                "pyinfra",
                "-y",
                inventory,
                deploy,
                *limit_args(batch),
                *extra,
            ]
            subprocess.run(argv, cwd=cwd, env=env, check=False)
            return json.loads(results.read_text()) if results.exists() else {}

    return run
