"""One typed outcome per host, for the summary table, ``llmfleet rollout`` and scripts.

A deploy records what it learns about each host in a ``HostRecord`` while it
runs (the plan's recipe and release, a planned failure, what the weights
pull and the health gate saw, tuning and stack results); when the run ends
``outcome()`` turns each record plus pyinfra's own verdict (connected?
failed?) into a ``HostOutcome``.  The table prints it, ``LLMFLEET_RESULTS``
gets it as JSON, and ``llmfleet rollout`` decides on ``status`` alone: no
parsing of coloured strings.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from enum import Enum
from typing import Any


class Status(str, Enum):
    HEALTHY = "healthy"  # the health gate passed (or a no-change probe saw it serving)
    OK = "ok"  # the deploy applied without a health gate (onboard, weights)
    DRY_RUN = "dry-run"  # --dry: planned, nothing applied
    WOULD_FAIL = "would-fail"  # --dry, and the plan already fails this host
    FAILED = "failed"  # an operation failed, or the plan refused the host
    UNHEALTHY = "unhealthy"  # it ran, but the server does not serve
    UNREACHABLE = "unreachable"  # pyinfra could not connect
    NOT_CHECKED = "not-checked"  # nothing was planned for it (e.g. outside --limit)


GOOD = {Status.HEALTHY, Status.OK, Status.DRY_RUN}


@dataclass
class HostRecord:
    """What a run learned about one host, filled in as it goes."""

    recipe: str = "-"
    release: str = "-"
    model: str = "-"
    weights_verified: bool = False
    error: str | None = None  # why the plan or a step refused the host
    health: dict[str, Any] | None = None  # the gate's or the probe's result
    pull: dict[str, Any] | None = None  # the weights pull's summary, when one ran
    tuning: list[Any] = field(default_factory=list)  # llmfleet.tuning.Finding
    stack: dict[str, str] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    planned: bool = False


@dataclass(frozen=True)
class HostOutcome:
    host: str
    status: Status
    detail: str
    recipe: str = "-"
    release: str = "-"
    model: str = "-"
    weights: str = "-"
    timings: dict[str, float] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["status"] = self.status.value
        return out


def human_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if n < 1000 or unit == "TB":
            return f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"


def _weights(rec: HostRecord) -> str:
    pull = rec.pull
    if pull:
        again = f", re-fetched {', '.join(pull['refetched'])}" if pull.get("refetched") else ""
        return f"pulled {human_bytes(pull.get('bytes', 0))} in {pull['wall']}s{again}"
    if rec.weights_verified:
        return "cached (verified)"
    return "cached" if rec.model != "-" else "-"


def _verdict(rec: HostRecord, connected: bool, failed: bool, dry: bool) -> tuple[Status, str]:
    result = rec.health
    if not connected:
        return Status.UNREACHABLE, "could not connect (see the pyinfra output above)"
    if dry:  # nothing ran: no health gate, no failing operation; say what is known
        if rec.error:
            return Status.WOULD_FAIL, rec.error
        serving = result and result.get("probe") and result.get("ok")
        return Status.DRY_RUN, "nothing applied" + ("; serving now" if serving else "")
    if failed:
        detail = (result or {}).get("error") or rec.error or "an operation failed (see above)"
        return Status.FAILED, detail
    if not result:
        return (Status.OK, "") if rec.planned else (Status.NOT_CHECKED, "")
    if result.get("ok"):
        reply, linked = result.get("reply"), result.get("connected")
        if result.get("probe"):
            detail = "already serving (no change, not restarted)"
        elif linked:  # a headless worker of a multi-node server
            detail = f"worker, connected to rank 0 at {linked} after {result['seconds']}s"
        else:
            detail = f"answered {reply!r} after {result['seconds']}s"
        return Status.HEALTHY, detail
    return Status.UNHEALTHY, str(result.get("error", result))


def outcome(name: str, rec: HostRecord, *, connected: bool, failed: bool, dry: bool) -> HostOutcome:
    status, detail = _verdict(rec, connected, failed, dry)
    return HostOutcome(
        host=name,
        status=status,
        detail=detail,
        recipe=rec.recipe,
        release=rec.release,
        model=rec.model,
        weights=_weights(rec),
        timings=dict(rec.timings),
    )
