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

from .drain import BatchDrain
from .errors import LlmfleetError
from .outcome import GOOD, Status


def batches(hosts: list[str], size: str, units: list[list[str]] | None = None) -> list[list[str]]:
    """Split ``hosts`` into batches of ``size`` units, or ``N%`` of them (at least 1).

    A unit is one host, or the members of one serving group (``grouplife.batch_units``):
    a multi-node server is deployed whole, so a batch of 1 is one server."""
    units = units or [[h] for h in hosts]
    text = str(size).strip()
    try:
        n = math.ceil(len(units) * float(text[:-1]) / 100) if text.endswith("%") else int(text)
    except ValueError as exc:
        raise LlmfleetError(
            f"--batch {size!r}: use a host count (2) or a percentage (25%)"
        ) from exc
    n = max(1, n)
    return [[h for u in units[i : i + n] for h in u] for i in range(0, len(units), n)]


def fail_limit(total: int, max_fail: str) -> int:
    """How many failed hosts are tolerated: a count, or ``N%`` of the fleet (rounded down)."""
    text = str(max_fail).strip()
    if text.endswith("%"):
        return int(total * float(text[:-1]) / 100)
    return int(text)


def max_fail_of(max_fail: str, fail_percent: float | None) -> str:
    """``--fail-percent N`` is ``--max-fail N%``: the share of the whole fleet (its
    units) that may fail over the rollout.  pyinfra's own ``--fail-percent`` is never
    given to a batch's run: it would stop every host of the batch mid-deploy."""
    if fail_percent is None:
        return max_fail
    if not 0 <= fail_percent <= 100:
        raise LlmfleetError(f"--fail-percent {fail_percent:g}: use a share from 0 to 100")
    return f"{fail_percent:g}%"


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
    units: list[list[str]] | None = None,
    drain: BatchDrain | None = None,
    hook: BatchHook | None = None,
) -> Rollout:
    """Run ``run(batch)`` batch by batch; stop when failed units (hosts, or serving groups
    with any member failed) exceed the threshold.  With ``drain``, each batch leaves the
    router(s) first and the hosts that passed go back in after it (``llmfleet/drain.py``);
    a host that failed stays out.  With ``hook`` (the bench gate), a host's good result
    may turn failed after the run, before it goes back into the router."""
    out = Rollout()
    units = units or [[h] for h in hosts]
    limit = fail_limit(len(units), max_fail)
    plan = batches(hosts, size, units)
    for i, batch in enumerate(plan, 1):
        say(f"batch {i}/{len(plan)}: {', '.join(batch)}")
        if drain:
            drain.before(batch)
        if hook:
            hook.before(batch)
        results = run(batch)
        if hook:  # while still out of the router: the gate's load is its own
            results = hook.after(batch, results)
        ok: dict[str, bool] = {}
        for h in batch:
            status = results.get(h, {}).get("status", Status.FAILED.value)
            ok[h] = status in {s.value for s in GOOD}
            if not ok[h]:
                out.failed[h] = f"{status}: {results.get(h, {}).get('detail', 'no result')}"
        not_back = drain.after(ok) if drain else {}
        out.failed.update(not_back)
        out.done += [h for h in batch if ok[h] and h not in not_back]
        failed_units = sum(1 for u in units if any(h in out.failed for h in u))
        if failed_units > limit:
            out.stopped = True
            out.skipped = [h for b in plan[i:] for h in b]
            what = "host(s)" if all(len(u) == 1 for u in units) else "host(s) or group(s)"
            say(
                f"stopping: {failed_units} failed {what} > allowed {limit}; "
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
