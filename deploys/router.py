"""The fleet's router: one endpoint in front of every serving host (smg under systemd).

    pyinfra inventories/lab_router.py deploys/router.py
    pyinfra INVENTORY deploys/router.py --data router_policy=round_robin

Runs on the hosts with ``router: true``; the others are left alone.  The
worker list is generated from the inventory's serving hosts (a serve group
contributes its rank 0 only), the policy is ``router_policy`` (default
cache-aware), the endpoint key (``api_key``/``api_key_file``) stays out of
argv, health checks and retries are on, and ``/health``, ``/readiness`` and
Prometheus metrics (``router_metrics_port``) are the router's own.  Pinned
(``files/routers/smg.yaml``), a release like the servers', and a second run
changes nothing.  Deploy it again after the inventory's servers change.
"""

from pyinfra import host

from llmfleet.engineenv import PackageSource
from llmfleet.settings import Settings
from roles.plan import settings_only
from roles.router import current_router, fleet_router


def router(s: Settings) -> None:
    if not s.router:
        print(f"    [{host.name}] not a router host (router: false): nothing to do")
        return
    plan = current_router(s)
    if plan is not None:
        fleet_router(plan, PackageSource.from_settings(s), keep=s.release_keep)


_settings = settings_only()
if _settings is not None:
    router(_settings)
