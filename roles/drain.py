"""Drain around a restart inside a deploy (rollback): out of the router(s), wait, back in.

The same logic as ``llmfleet rollout`` (``llmfleet/drain.py``), as two
``python.call`` operations that run on the control node at execute time: the
first before the host's server restarts, the second after its health gate
passed.  A host that fails in between never reaches the second and stays
out.  A fleet without a router host gets neither.
"""

from __future__ import annotations

from pyinfra import host
from pyinfra.operations import python

from llmfleet.drain import Drainer
from llmfleet.errors import LlmfleetError
from llmfleet.router import admins, member_urls
from llmfleet.settings import Settings

from .router import fleet


def _take_out(drainer: Drainer, url: str, timeout: float, out: dict[str, bool]) -> None:
    """A rollback is often urgent: a router that cannot be reached does not stop it (it
    sends this host nothing either); the host then is not put back by us."""
    try:
        report = drainer.take_out(host.name, url, timeout)
    except LlmfleetError as exc:
        print(f"    [{host.name}] warning: not drained: {exc}")
        return
    out["out"] = True
    print(f"    [{host.name}] {report.line()}")


def _put_back(drainer: Drainer, url: str, out: dict[str, bool]) -> None:
    if not out.get("out"):
        return
    why = drainer.put_back(host.name, url)
    if why:
        raise RuntimeError(why)
    print(f"    [{host.name}] back in the router")


Drain = tuple[Drainer, str, dict[str, bool]]


def drained(s: Settings) -> Drain | None:
    """Queue the take-out; returns what ``back_in`` needs, or None (no router, or this
    host is not behind one)."""
    plans = fleet()
    url = member_urls(plans).get(host.name)
    routers = admins(plans)
    if not routers or url is None:
        return None
    drainer, out = Drainer(routers), {"out": False}
    python.call(
        name=f"Out of the router, in-flight requests drained (at most {s.drain_timeout}s)",
        function=_take_out,
        drainer=drainer,
        url=url,
        timeout=float(s.drain_timeout),
        out=out,
    )
    return drainer, url, out


def back_in(drain: Drain | None) -> None:
    if drain is not None:
        drainer, url, out = drain
        python.call(
            name="Back in the router", function=_put_back, drainer=drainer, url=url, out=out
        )
