"""``llmfleet plan``: per-host recipe, parallelism and memory fit, without connecting."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .catalog import Catalog
from .errors import LlmfleetError
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
        inv = make_inventory(str(path), cwd=str(Path.cwd()))
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
    check_fleet(plans)
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
                "problems": [
                    {"severity": x.severity, "field": x.field, "message": x.message, "fix": x.fix}
                    for x in p.problems
                ],
            }
        )
    return out
