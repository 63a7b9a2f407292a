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
from llmfleet.router import admins, member_urls
from llmfleet.settings import Settings

from .router import fleet


def _take_out(drainer: Drainer, url: str, timeout: float) -> None:
    report = drainer.take_out(host.name, url, timeout)
    print(f"    [{host.name}] {report.line()}")


def _put_back(drainer: Drainer, url: str) -> None:
    why = drainer.put_back(host.name, url)
    if why:
        raise RuntimeError(why)
    print(f"    [{host.name}] back in the router")


def drained(s: Settings) -> tuple[Drainer, str] | None:
    """Queue the take-out; returns what ``back_in`` needs, or None (no router, or this
    host is not behind one)."""
    plans = fleet()
    url = member_urls(plans).get(host.name)
    routers = admins(plans)
    if not routers or url is None:
        return None
    drainer = Drainer(routers)
    python.call(
        name=f"Out of the router, in-flight requests drained (at most {s.drain_timeout}s)",
        function=_take_out,
        drainer=drainer,
        url=url,
        timeout=float(s.drain_timeout),
    )
    return drainer, url


def back_in(drain: tuple[Drainer, str] | None) -> None:
    if drain is not None:
        python.call(name="Back in the router", function=_put_back, drainer=drain[0], url=drain[1])
