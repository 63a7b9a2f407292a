"""Checks that run before any connection, each naming the host, the field and a fix.

A deploy that fails on host 7 of 16 because of a typo is the failure this
module exists to prevent: everything that can be known from the inventory
and the catalog is checked here, for every host, before pyinfra connects.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field, replace
from typing import Any

from .catalog import Catalog, CatalogError, Hardware, Recipe
from .errors import Problem, ValidationError
from .parallel import MemoryFit, memory_fit
from .render import Rendered, render
from .servegroup import ServeGroup, plan_groups
from .settings import Settings, parse_settings


@dataclass
class HostPlan:
    """Everything ``llmfleet plan`` shows for one host."""

    host: str
    address: str
    settings: Settings = field(default_factory=Settings)
    hardware: str | None = None
    recipe: str | None = None
    rendered: Rendered | None = None
    fit: MemoryFit | None = None
    problems: list[Problem] = field(default_factory=list)
    # the multi-node server this host is a member of (its serve_group, once planned)
    group: ServeGroup | None = None

    @property
    def ok(self) -> bool:
        return not any(p.severity == "error" for p in self.problems)


def _fit_problems(
    host: str, recipe: Recipe, r: Rendered, catalog: Catalog, hw: Hardware, memory_gb: float
) -> tuple[MemoryFit | None, list[Problem]]:
    out: list[Problem] = []
    par, devices = r.parallel, hw.devices_per_host
    if par.world % par.nodes:
        out.append(
            Problem(
                host,
                "parallelism",
                f"{par.describe()} uses {par.world} devices, "
                f"which does not split evenly over {par.nodes} nodes",
            )
        )
    if par.per_node > devices:
        out.append(
            Problem(
                host,
                "parallelism",
                f"{par.describe()} needs {par.per_node} devices per node but "
                f"{hw.id} hosts have {devices}",
                fix=f"lower the parallel sizes or use {-(-par.world // devices)} nodes",
            )
        )
    weights = catalog.weights_gb(r.model_repo)
    if weights is None:
        out.append(
            Problem(
                host,
                "model",
                f"no size known for {r.model_repo}; memory fit not checked",
                fix="add it to files/models.yaml",
                severity="warning",
            )
        )
        return None, out
    fit = memory_fit(par, recipe.flags(), catalog.engines[recipe.engine], weights, memory_gb)
    if not fit.fits:
        out.append(
            Problem(
                host,
                "memory",
                f"{catalog.precision(r.model_repo).upper()} weights of {r.model_repo} "
                f"(~{weights:.0f} GB) over {fit.shards} devices need ~{fit.per_device_gb} GB each, "
                f"but a {hw.id} device offers {fit.usable_gb} GB at {fit.fraction:.0%}",
                fix=_fit_fix(catalog, hw, fit, weights),
            )
        )
    return fit, out


def _fit_fix(catalog: Catalog, hw: Hardware, fit: MemoryFit, weights: float) -> str:
    """Say how many nodes it takes, and which recipes and smaller checkpoints would do."""
    need = fit.nodes_needed(hw.devices_per_host)
    same = [x.id for x in catalog.recipes.values() if x.hardware == hw.id and x.nodes >= need]
    vendor = {
        x.model["repo"]
        for x in catalog.recipes.values()
        if catalog.hw(x.hardware).vendor == hw.vendor
    }
    smaller = sorted(repo for repo in vendor if (catalog.weights_gb(repo) or weights) < weights)
    text = f"it needs {need} nodes (tp {need * hw.devices_per_host})"
    if same:
        text += f", e.g. recipe {same[0]}"
    if smaller:
        text += " or a smaller checkpoint: " + ", ".join(
            f"{catalog.precision(repo).upper()} {repo}" for repo in smaller
        )
    return text


def _start(name: str, data: dict[str, Any], address: str | None) -> HostPlan:
    """Parse the host's data against the schema: the first thing every plan does."""
    settings, problems = parse_settings(name, data)
    return HostPlan(
        host=name,
        address=address or str(data.get("ssh_hostname") or name),
        settings=settings,
        problems=problems,
    )


def plan_host(
    catalog: Catalog, name: str, data: dict[str, Any], address: str | None = None
) -> HostPlan:
    """Validate one host's data and render its recipe; collect every problem."""
    plan = _start(name, data, address)
    if plan.ok and plan.settings.router and not plan.settings.recipe:
        return plan  # a router-only host (deploys/router.py): nothing to serve
    return _plan_recipe(catalog, plan) if plan.ok else plan


def _plan_recipe(catalog: Catalog, plan: HostPlan) -> HostPlan:
    name, problems, settings = plan.host, plan.problems, plan.settings
    rid, hid = settings.recipe, settings.hardware
    if not rid:
        problems.append(
            Problem(
                name,
                "recipe",
                "no recipe set",
                fix="set recipe in group_data or host data (llmfleet recipes list)",
            )
        )
    if not hid:
        problems.append(
            Problem(
                name,
                "hardware",
                "no hardware profile set",
                fix=f"set hardware to one of {', '.join(sorted(catalog.hardware))}",
            )
        )
    if problems:
        return plan
    try:
        recipe, hw = catalog.recipe(rid), catalog.hw(hid)
    except CatalogError as exc:
        field_name = "recipe" if "recipe" in str(exc) else "hardware"
        problems.append(Problem(name, field_name, str(exc)))
        return plan
    plan.recipe, plan.hardware = recipe.id, hw.id
    rhw = catalog.hw(recipe.hardware)
    if rhw.vendor != hw.vendor:
        problems.append(
            Problem(
                name,
                "recipe",
                f"{recipe.id} is a {rhw.vendor} recipe "
                f"({rhw.id}) but the host is {hw.id} ({hw.vendor})",
                fix=f"pick a recipe for {hw.id}: "
                + ", ".join(r.id for r in catalog.recipes.values() if r.hardware == hw.id)[:200],
            )
        )
        return plan
    if rhw.id != hw.id:
        problems.append(
            Problem(
                name,
                "recipe",
                f"{recipe.id} was verified on {rhw.id}, not on {hw.id}",
                severity="warning",
            )
        )
    try:
        plan.rendered = render(catalog, recipe, settings, name)
    except ValidationError as exc:
        # rendering does not know host names: put this host's name on what it found
        problems.extend(replace(p, host=name) if p.host == "-" else p for p in exc.problems)
        return plan
    except CatalogError as exc:
        problems.append(Problem(name, "overlays", str(exc)))
        return plan
    memory = (
        settings.host_memory_gb or hw.device_memory_gb
        if hw.vendor == "none"
        else hw.device_memory_gb
    )
    plan.fit, fit_problems = _fit_problems(name, recipe, plan.rendered, catalog, hw, memory)
    problems.extend(fit_problems)
    if recipe.nodes > 1 and not settings.master_addr and not settings.serve_group:
        problems.append(
            Problem(
                name,
                "master_addr",
                f"{recipe.id} runs on {recipe.nodes} nodes",
                fix=f"give the {recipe.nodes} hosts of this server the same serve_group "
                "(ranks follow inventory order; docs/multinode.md), or set master_addr "
                "(rank 0's address) and node_rank per host",
            )
        )
    return plan


def check_fleet(plans: list[HostPlan], catalog: Catalog | None = None) -> None:
    """Problems that only show across hosts: serve groups (each member rendered for its
    rank; ``llmfleet/servegroup.py``), port clashes and hand-set multi-node ranks.
    ``catalog`` None: the process's own, as the deploy's roles load it."""
    plan_groups(plans, catalog)
    by_addr: dict[tuple[str, int], list[HostPlan]] = defaultdict(list)
    for p in plans:
        if p.rendered:
            by_addr[(p.address, p.rendered.port)].append(p)
    for (addr, port), group in by_addr.items():
        if len(group) > 1:
            for p in group:
                others = ", ".join(o.host for o in group if o is not p)
                p.problems.append(
                    Problem(
                        p.host,
                        "port",
                        f"{addr}:{port} is also used by {others}",
                        fix="give each server its own port",
                    )
                )
    ranks: dict[tuple[str, str | None], list[HostPlan]] = defaultdict(list)
    for p in plans:  # serve groups checked their own ranks
        if p.rendered and p.rendered.parallel.nodes > 1 and not p.settings.serve_group:
            ranks[(p.recipe or "", p.rendered.master_addr)].append(p)
    for group in ranks.values():
        seen: dict[int, str] = {}
        for p in group:
            rank = p.rendered.rank if p.rendered else 0
            if rank in seen:
                p.problems.append(
                    Problem(
                        p.host,
                        "node_rank",
                        f"rank {rank} is also {seen[rank]}'s",
                        fix="give each node its own rank",
                    )
                )
            seen[rank] = p.host


def plan_onboard(
    catalog: Catalog, name: str, data: dict[str, Any], address: str | None = None
) -> HostPlan:
    """Onboarding needs only a known hardware profile; a recipe, when set, must plan cleanly.

    A bare host is onboarded before anyone picks what it serves, so a missing
    recipe is no error here (tuning then uses the baseline); a recipe that is
    set but wrong is, because the host would be tuned for it.
    """
    plan = _start(name, data, address)
    stack = plan.settings.accelerator_stack
    if stack and stack not in catalog.vendors:
        plan.problems.append(
            Problem(
                name,
                "accelerator_stack",
                f"{stack!r} is no vendor stack",
                fix=f"one of {', '.join(sorted(catalog.vendors))} (files/stacks/)",
            )
        )
    if not plan.ok:
        return plan
    if plan.settings.recipe:
        return _plan_recipe(catalog, plan)
    hid = plan.settings.hardware
    if not hid:
        plan.problems.append(
            Problem(
                name,
                "hardware",
                "no hardware profile set",
                fix=f"set hardware to one of {', '.join(sorted(catalog.hardware))}",
            )
        )
        return plan
    try:
        plan.hardware = catalog.hw(hid).id
    except CatalogError as exc:
        plan.problems.append(Problem(name, "hardware", str(exc)))
    return plan
