"""The rollout's benchmark gate: a batch that got slower goes back, like one that failed health.

``llmfleet rollout --bench-gate PCT`` calls :meth:`BenchGate.before` and
:meth:`BenchGate.after` around each batch (``llmfleet/rollout.py``).  Before
the batch, each host's current release needs a figure to be judged against:
the best stored run of that release with the same workload and client, or a
run made now.  After the batch, each host that is healthy on a *new* release is
benchmarked; if its output tok/s fell, or its p99 TPOT rose, by more than
PCT percent (``benchmetrics.gate_verdict``), the host is put back on the
release it ran before (``deploys/rollback.py --data release=ID``, itself
health-gated) and counts as failed, so ``--max-fail`` stops the rollout.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from . import bench, benchclient, benchstore
from .benchmetrics import gate_verdict
from .benchstore import BenchRun
from .catalog import Catalog
from .errors import LlmfleetError
from .outcome import GOOD, Status

# reverts hosts to a release: (hosts, release id) -> per-host results of that run
Reverter = Callable[[list[str], str], dict[str, dict]]


@dataclass
class BenchGate:
    cat: Catalog
    hosts: list[tuple[str, dict[str, Any]]]
    pct: float
    revert: Reverter
    req: bench.Request = field(default_factory=bench.Request)
    say: Callable[[str], None] = print
    # host -> (release before the batch, its figures)
    baseline: dict[str, tuple[str, BenchRun | None]] = field(default_factory=dict)
    # host -> why the baseline could not be measured (the host is then not judged)
    unmeasured: dict[str, str] = field(default_factory=dict)

    def _subset(self, batch: list[str]) -> list[tuple[str, dict[str, Any]]]:
        return [(n, d) for n, d in self.hosts if n in batch]

    def before(self, batch: list[str]) -> None:
        """Make sure every host's current release has figures to be judged against."""
        states = bench.read_states(self._subset(batch))
        client = benchclient.load_client()
        need = []
        for hs in states:
            if hs.state is None or not hs.state.current:
                self.unmeasured[hs.name] = hs.error or "no current release"
                continue
            try:
                _, params, _ = bench.plan_host(self.cat, client, hs, self.req)
            except LlmfleetError as exc:
                self.unmeasured[hs.name] = str(exc)
                continue
            stored = benchstore.best(
                self.req.results, hs.name, hs.state.current, params[0], client.digest
            )
            self.baseline[hs.name] = (hs.state.current, stored)
            if stored is None:
                need.append(hs)
        if need:
            self.say(
                "bench gate: measuring the running release first: "
                + ", ".join(hs.name for hs in need)
            )
            for hb in bench.bench_fleet(self.cat, self.hosts, self.req, self.say, states=need):
                release = self.baseline[hb.host][0]
                if hb.ok:
                    self.baseline[hb.host] = (release, hb.runs[0])
                else:
                    self.unmeasured[hb.host] = hb.error

    def after(self, batch: list[str], results: dict[str, dict]) -> dict[str, dict]:
        """Benchmark the healthy hosts on a new release; revert and fail the slower ones."""
        good = {s.value for s in GOOD}
        judged = [
            h
            for h in batch
            if results.get(h, {}).get("status") in good
            and h in self.baseline
            and self.baseline[h][1] is not None
        ]
        for h in batch:
            if h in self.unmeasured and results.get(h, {}).get("status") in good:
                self.say(f"bench gate: {h} not judged: {self.unmeasured[h]}")
        if not judged:
            return results
        states = [
            hs
            for hs in bench.read_states(self._subset(judged))
            if not (hs.state and hs.state.current == self.baseline[hs.name][0])
        ]  # a host whose release did not change has nothing to be judged
        out = dict(results)
        to_revert: dict[str, list[str]] = {}
        for hb in bench.bench_fleet(self.cat, self.hosts, self.req, self.say, states=states):
            old_release, old = self.baseline[hb.host]
            if not hb.ok:
                why = [f"benchmark failed: {hb.error}"]
            else:
                why = gate_verdict(hb.runs[0].metrics, old.metrics, self.pct)
            if why:
                self.say(f"bench gate: {hb.host} release {hb.release}: " + "; ".join(why))
                to_revert.setdefault(old_release, []).append(hb.host)
                out[hb.host] = {
                    **out.get(hb.host, {}),
                    "status": Status.FAILED.value,
                    "detail": f"bench gate vs release {old_release}: " + "; ".join(why),
                }
            else:
                self.say(f"bench gate: {hb.host} release {hb.release} passes ({self.pct:g}%)")
        for release, hosts in to_revert.items():
            back = self.revert(hosts, release)
            for h in hosts:
                status = back.get(h, {}).get("status", "no result")
                ok = status in good
                out[h]["detail"] += (
                    f"; reverted to {release}" if ok else f"; revert to {release}: {status}"
                )
        return out
