"""This host's validated plan, computed once per host at prepare time.

Validation problems fail only the host they belong to (with a message naming
host, field and fix) before any operation touches it; the other hosts go on.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pyinfra import host, inventory
from pyinfra.operations import server

from llmfleet.catalog import Catalog, Hardware, Recipe, load
from llmfleet.render import Rendered
from llmfleet.validate import HostPlan, check_fleet, plan_host, plan_onboard

_FLEET: dict[str, HostPlan] = {}


@dataclass
class ServePlan:
    catalog: Catalog
    recipe: Recipe
    rendered: Rendered
    data: dict[str, Any]


def _fleet_plans(catalog: Catalog) -> dict[str, HostPlan]:
    """Plan every inventory host once, so fleet-wide checks (ports, ranks) apply."""
    if not _FLEET:
        plans = [
            plan_host(
                catalog, h.name, dict(h.data.dict()), str(h.data.get("ssh_hostname") or h.name)
            )
            for h in inventory
        ]
        check_fleet(plans)
        _FLEET.update({p.host: p for p in plans})
    return _FLEET


def fail_host(message: str) -> None:
    """Fail this host with a readable reason, touching nothing on it."""
    from . import summary  # here: summary imports the roles that import this module

    summary.note(host.name, error=message)  # for the table, --dry included
    server.shell(name=f"llmfleet: {message}"[:200], commands=[f"echo {_sh(message)} >&2; exit 1"])


def _sh(text: str) -> str:
    return "'" + text.replace("'", "'\"'\"'") + "'"


def _report(problems: list, missing: str | None) -> bool:
    """Print warnings; fail the host on errors (or on ``missing``). True if it failed."""
    for problem in problems:
        if problem.severity == "warning":
            print(f"[{host.name}] warning: {problem}")
    errors = [p for p in problems if p.severity == "error"]
    if errors or missing:
        fail_host("; ".join(str(e) for e in errors) or str(missing))
        return True
    return False


def current() -> ServePlan | None:
    """The plan for ``host``, or None after queuing a failing operation."""
    catalog = load()
    plan = _fleet_plans(catalog)[host.name]
    if _report(plan.problems, missing="no plan" if plan.rendered is None else None):
        return None
    return ServePlan(catalog, catalog.recipe(plan.recipe), plan.rendered, dict(host.data.dict()))


@dataclass
class OnboardPlan:
    """What onboarding needs: the hardware profile, and the recipe when one is set."""

    catalog: Catalog
    hardware: Hardware
    recipe: Recipe | None
    rendered: Rendered | None
    data: dict[str, Any]


def onboarding() -> OnboardPlan | None:
    """The onboarding plan for ``host``, or None after queuing a failing operation.

    Unlike ``current()`` it needs no recipe and skips the fleet-wide serving
    checks (ports, ranks): onboarding prepares the machine, not a server.
    """
    catalog = load()
    data = dict(host.data.dict())
    plan = plan_onboard(catalog, host.name, data, str(data.get("ssh_hostname") or host.name))
    if _report(plan.problems, missing="no hardware profile" if plan.hardware is None else None):
        return None
    recipe = catalog.recipe(plan.recipe) if plan.recipe else None
    return OnboardPlan(catalog, catalog.hw(plan.hardware), recipe, plan.rendered, data)
