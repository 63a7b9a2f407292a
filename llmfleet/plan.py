"""``llmfleet plan``: per-host settings, recipe, parallelism and memory fit, without
connecting to any host; and the serve plan (commit, unit, release) built from it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .apikeys import api_key_for
from .catalog import Catalog
from .errors import LlmfleetError
from .hubapi import resolve_commit
from .images import ImageRef, resolve_digest
from .serveplan import ServePlan, build_serve_plan, weights_plan
from .validate import HostPlan, check_fleet, plan_host


def load_inventory_data(inventory: str) -> list[tuple[str, str, dict[str, Any]]]:
    """(name, address, merged data) per host, read the way ``pyinfra`` reads them.

    Using pyinfra's own loader means group_data layering is exactly what a
    deploy will see; nothing is connected to.
    """
    from pyinfra.api import State
    from pyinfra.context import ctx_state
    from pyinfra_cli.inventory import make_inventory

    path = Path(inventory)
    if not path.exists():
        raise LlmfleetError(f"inventory {inventory}: no such file")
    with ctx_state.use(State()):
        try:
            inv = make_inventory(str(path), cwd=str(Path.cwd()))
        except SystemExit as exc:  # an inventory that explains itself and exits
            raise LlmfleetError(str(exc.code) if exc.code else f"{inventory}: exited") from None
    hosts = []
    for host in inv:
        data = dict(host.data.dict())
        hosts.append((host.name, str(data.get("ssh_hostname") or host.name), data))
    if not hosts:
        raise LlmfleetError(f"inventory {inventory}: no hosts")
    return hosts


def plan_inventory(
    catalog: Catalog, hosts: list[tuple[str, str, dict[str, Any]]]
) -> list[HostPlan]:
    plans = [plan_host(catalog, name, data, address) for name, address, data in hosts]
    check_fleet(plans, catalog)
    return plans


def plan_json(plans: list[HostPlan]) -> list[dict[str, Any]]:
    out = []
    for p in plans:
        r, fit = p.rendered, p.fit
        out.append(
            {
                "host": p.host,
                "address": p.address,
                "hardware": p.hardware,
                "recipe": p.recipe,
                "ok": p.ok,
                "parallelism": r.parallel.describe() if r else None,
                "devices_per_node": r.parallel.per_node if r else None,
                "memory": None
                if fit is None
                else {
                    "weights_gb": fit.weights_gb,
                    "per_device_gb": fit.per_device_gb,
                    "usable_gb": fit.usable_gb,
                    "fits": fit.fits,
                },
                "argv": r.argv if r else None,
                # multi-node: this host's rank, role and rendezvous ports, and its group
                "node": r.node.to_json() if r and r.node else None,
                "group": p.group.to_json() if p.group else None,
                "problems": [
                    {"severity": x.severity, "field": x.field, "message": x.message, "fix": x.fix}
                    for x in p.problems
                ],
            }
        )
    return out


def revision_key(plan: HostPlan) -> tuple[str, str, str | None]:
    """What a host's commit depends on: repo, revision and the endpoint that resolves it."""
    s, r = plan.settings, plan.rendered
    assert r is not None, "only a host that planned cleanly has a commit"
    return (r.model_repo, r.revision, s.hf_control_endpoint or s.hf_endpoint)


def pinned_commit(plan: HostPlan) -> str:
    """The host's model revision as a commit, resolved on the control node."""
    return resolve_commit(*revision_key(plan))


def image_key(plan: HostPlan) -> tuple[ImageRef, frozenset[str]] | None:
    """What a docker host's image digest depends on: the image as the host pulls it
    (through the site registry, when there is one) and the registries spoken in HTTP."""
    r, s = plan.rendered, plan.settings
    if r is None or r.docker is None:
        return None
    ref = ImageRef.parse(str(r.docker["image"])).via(s.image_registry)
    return ref, frozenset(s.insecure_registries)


def pin_image(ref: ImageRef, insecure: frozenset[str]) -> str:
    """``ref`` as ``name@sha256:...``: its tag resolved now, on the control node."""
    return ref.pinned(resolve_digest(ref, insecure))


def pinned_image(plan: HostPlan) -> str | None:
    """The host's image pinned by digest (None: a venv release)."""
    key = image_key(plan)
    return pin_image(*key) if key else None


def serve_plan(
    catalog: Catalog,
    plan: HostPlan,
    commit: str,
    *,
    image: str | None = None,
    peer_address: str | None = None,
    serves_peers: bool = False,
    swarm: tuple[tuple[str, str, int], ...] = (),
) -> ServePlan:
    """Everything the serve deploy applies to this host (see ``llmfleet/serveplan.py``)."""
    assert plan.recipe is not None and plan.rendered is not None
    recipe = catalog.recipe(plan.recipe)
    s = plan.settings
    weights = weights_plan(s, plan.rendered.model_repo, commit, peer_address, serves_peers, swarm)
    key = api_key_for(plan.host, s, catalog.engines[recipe.engine])
    return build_serve_plan(
        catalog, plan.host, s, recipe, weights, api_key=key, image=image, group=plan.group
    )
