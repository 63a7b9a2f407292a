"""The validated plans, computed once per run at prepare time, before any host is touched.

Every inventory host is parsed against the settings schema and planned with
the catalog first, so fleet-wide checks (ports, ranks, fan-out peers) apply;
then each host's serve plan is built: revision resolved to a commit on the
control node, endpoint key, engine, unit, env file, release.  Problems fail
only the host they belong to (with a message naming host, key and fix); the
other hosts go on.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from pyinfra import host, inventory, state
from pyinfra.operations import server

from llmfleet.catalog import Catalog, Hardware, Recipe, load
from llmfleet.errors import LlmfleetError
from llmfleet.grouplife import left_out_error
from llmfleet.hubapi import resolve_commit
from llmfleet.monitorplan import MonitorPlan, Watched, monitor_plan
from llmfleet.multinode import node_ip
from llmfleet.plan import image_key, pin_image, revision_key, serve_plan
from llmfleet.render import Rendered
from llmfleet.servegroup import ServeGroup
from llmfleet.serveplan import ServePlan, WeightsPlan, weights_plan
from llmfleet.settings import Settings, parse_settings
from llmfleet.validate import HostPlan, check_fleet, plan_host, plan_onboard

from .facts import InterfaceOf
from .run import current_run, record


def _fleet(catalog: Catalog) -> dict[str, HostPlan]:
    """Plan every inventory host once per run, so fleet-wide checks apply, and resolve
    each distinct model revision and image tag once for the whole fleet (hosts pin the
    same commit and digest however long the fleet takes to prepare, and the Hub and the
    registry see one request each)."""
    run = current_run()
    with run.lock:
        if run.plans is None:
            plans = _inventory_plans(catalog)
            check_fleet(plans)
            ready = [p for p in plans if p.ok and p.rendered]
            for key in {revision_key(p) for p in ready}:
                run.resolved[key] = _try(resolve_commit, *key)
            for ikey in {image_key(p) for p in ready} - {None}:
                run.resolved[ikey] = _try(pin_image, *ikey)
            run.plans = {p.host: p for p in plans}
    return run.plans


def _inventory_plans(catalog: Catalog) -> list[HostPlan]:
    """Every inventory host parsed and planned (whatever --limit says)."""
    return [
        plan_host(catalog, h.name, dict(h.data.dict()), str(h.data.get("ssh_hostname") or h.name))
        for h in inventory
    ]


def _try(resolve, *args):
    """The resolved value, or the error, kept for every host that needs it."""
    try:
        return resolve(*args)
    except LlmfleetError as exc:
        return exc


def _resolved(key) -> Any:
    found = current_run().resolved[key]
    if isinstance(found, LlmfleetError):
        raise found
    return found


def _commit(plan: HostPlan) -> str:
    return _resolved(revision_key(plan))


def _image(plan: HostPlan) -> str | None:
    key = image_key(plan)
    return _resolved(key) if key else None


def fail_host(message: str) -> None:
    """Fail this host with a readable reason, touching nothing on it."""
    record(host.name).error = message  # for the table, --dry included
    server.shell(name=f"llmfleet: {message}"[:200], commands=[f"echo {_sh(message)} >&2; exit 1"])


def _sh(text: str) -> str:
    return "'" + text.replace("'", "'\"'\"'") + "'"


def _report(plan: HostPlan, missing: str | None) -> bool:
    """Print warnings; fail the host on errors (or on ``missing``). True if it failed."""
    for problem in plan.problems:
        if problem.severity == "warning":
            print(f"[{host.name}] warning: {problem}")
    errors = [p for p in plan.problems if p.severity == "error"]
    if errors or missing:
        fail_host("; ".join(str(e) for e in errors) or str(missing))
        return True
    return False


def _peers(plan: HostPlan, fleet: dict[str, HostPlan]) -> tuple[str | None, bool]:
    """The site fan-out: ``weights_peer: HOST`` copies from that host (its address);
    the named host serves its finished snapshot to the targeted hosts that need it."""
    s = plan.settings
    peer = s.weights_peer if s.weights_peer != plan.host else None
    address = None
    if peer:
        other = fleet.get(peer)
        if other is None:
            raise LlmfleetError(f"{plan.host}: weights_peer: no host {peer!r} in the inventory")
        address = other.address
    serves = any(
        p.settings.weights_peer == plan.host
        and p.host != plan.host
        and state.is_host_in_limit(inventory.get_host(p.host))
        for p in fleet.values()
    )
    return address, serves


def _swarm(plan: HostPlan, fleet: dict[str, HostPlan]) -> tuple[tuple[str, str, int], ...]:
    """The swarm this host is in: every host of this run (its ``--limit``) with
    ``weights_swarm`` that pulls the same repo at the same revision, as (host,
    address, peer port), sorted; empty without ``weights_swarm``."""
    s = plan.settings
    if not s.weights_swarm:
        return ()
    if s.weights_peer:
        raise LlmfleetError(
            f"{plan.host}: weights_swarm and weights_peer both set: choose one "
            "(the swarm already copies from every host that has the weights)"
        )
    mine = revision_key(plan)
    return tuple(
        sorted(
            (p.host, p.address, p.settings.weights_peer_port)
            for p in fleet.values()
            if p.ok
            and p.rendered
            and p.settings.weights_swarm
            and revision_key(p) == mine
            and state.is_host_in_limit(inventory.get_host(p.host))
        )
    )


def _validated() -> tuple[Catalog, HostPlan, dict[str, HostPlan]] | None:
    catalog = load()
    fleet = _fleet(catalog)
    plan = fleet[host.name]
    if plan.ok and plan.settings.router and not plan.settings.recipe:
        print(f"    [{host.name}] router host without a recipe: nothing to serve here")
        return None
    if _report(plan, missing="no plan" if plan.ok and plan.rendered is None else None):
        return None
    return catalog, plan, fleet


def current() -> ServePlan | None:
    """The serve plan for ``host``, or None after queuing a failing operation."""
    found = _validated()
    if found is None:
        return None
    catalog, plan, fleet = found
    if plan.group and _group_left_out(plan.group):
        return None
    if plan.group and not plan.settings.network_interface:
        plan = _with_interface(plan)
    try:
        address, serves = _peers(plan, fleet)
        serve = serve_plan(
            catalog,
            plan,
            _commit(plan),
            image=_image(plan),
            peer_address=address,
            serves_peers=serves,
            swarm=_swarm(plan, fleet),
        )
    except LlmfleetError as exc:
        fail_host(_named(exc))
        return None
    rec = record(host.name)
    rec.planned, rec.recipe, rec.release = True, serve.recipe.id, serve.release
    rec.model = serve.weights.label
    return serve


def whole_group_error(group: str, members: list[str]) -> str:
    """The error when this run (its ``--limit``) targets only part of ``group``."""
    targeted = [m for m in members if state.is_host_in_limit(inventory.get_host(m))]
    return left_out_error(host.name, group, members, targeted)


def _group_left_out(group: ServeGroup) -> bool:
    """Fail (and True) when the run targets only part of this host's serving group."""
    error = whole_group_error(group.name, [m.host for m in group.members])
    if error:
        fail_host(error)
    return bool(error)


def _with_interface(plan: HostPlan) -> HostPlan:
    """A group member without ``network_interface``: the NIC holding its group address,
    read from the host (one fact), so Gloo/NCCL/HCCL get their socket variables; left
    out (the engine picks) when the address is a name or no interface holds it."""
    ip = node_ip(plan.settings.group_address)
    nic = host.get_fact(InterfaceOf, address=ip) if ip else None
    if not nic:
        return plan
    return replace(plan, settings=replace(plan.settings, network_interface=nic))


def _named(exc: LlmfleetError) -> str:
    text = str(exc)
    return text if text.startswith(f"{host.name}:") else f"{host.name}: {text}"


@dataclass(frozen=True)
class PullPlan:
    """What the weights deploy needs: the recipe and its pinned snapshot."""

    recipe: Recipe
    weights: WeightsPlan


def pull_only() -> PullPlan | None:
    """The weights deploy's plan for ``host``, or None after queuing a failing operation."""
    found = _validated()
    if found is None:
        return None
    catalog, plan, fleet = found
    assert plan.recipe is not None and plan.rendered is not None
    try:
        address, serves = _peers(plan, fleet)
        weights = weights_plan(
            plan.settings,
            plan.rendered.model_repo,
            _commit(plan),
            address,
            serves,
            _swarm(plan, fleet),
        )
    except LlmfleetError as exc:
        fail_host(_named(exc))
        return None
    rec = record(host.name)
    rec.planned, rec.recipe, rec.model = True, plan.recipe, weights.label
    rec.weights_verified = weights.verify
    return PullPlan(catalog.recipe(plan.recipe), weights)


@dataclass(frozen=True)
class OnboardPlan:
    """What onboarding needs: the hardware profile, and the recipe when one is set."""

    catalog: Catalog
    hardware: Hardware
    recipe: Recipe | None
    rendered: Rendered | None
    settings: Settings


def onboarding() -> OnboardPlan | None:
    """The onboarding plan for ``host``, or None after queuing a failing operation.

    Unlike ``current()`` it needs no recipe and skips the fleet-wide serving
    checks (ports, ranks): onboarding prepares the machine, not a server.
    """
    catalog = load()
    data = dict(host.data.dict())
    plan = plan_onboard(catalog, host.name, data, str(data.get("ssh_hostname") or host.name))
    if _report(plan, missing="no hardware profile" if plan.ok and plan.hardware is None else None):
        return None
    record(host.name).planned = True
    recipe = catalog.recipe(plan.recipe) if plan.recipe else None
    assert plan.hardware is not None
    return OnboardPlan(catalog, catalog.hw(plan.hardware), recipe, plan.rendered, plan.settings)


def monitoring() -> tuple[MonitorPlan, Watched] | None:
    """The fleet's monitoring plan and this host's part in it, or None after queuing a
    failing operation.  Planned once per run from every inventory host (Prometheus
    watches the whole inventory, whatever ``--limit`` says)."""
    run = current_run()
    with run.lock:
        if run.monitor is None:
            catalog = load()
            run.monitor = monitor_plan(catalog, _inventory_plans(catalog))
    plan: MonitorPlan = run.monitor
    problems = plan.problems_of(host.name)
    mine = next((w for w in plan.watched if w.host == host.name), None)
    if problems or mine is None:
        fail_host("; ".join(str(p) for p in problems) or f"{host.name}: not planned")
        return None
    record(host.name).planned = True
    return plan, mine


def settings_only() -> Settings | None:
    """Just this host's parsed settings (rollback, mirror, preflight), or None after
    queuing a failing operation that names every bad key."""
    settings, problems = parse_settings(host.name, dict(host.data.dict()))
    if problems:
        fail_host("; ".join(str(p) for p in problems))
        return None
    record(host.name).planned = True
    return settings
