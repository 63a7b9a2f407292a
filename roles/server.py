"""Server role: service user, 0600 environment file, systemd unit, enabled and started.

The unit and env file texts come from the plan (``llmfleet/serveplan.py``).
Follows the unit pattern that keeps re-runs quiet: put unit and env,
daemon-reload only when the unit changed, ensure it is enabled and running.
Restarting a running server on a changed release is the health gate's job
(roles/health.py), so a failed restart can put the previous release back.
"""

from __future__ import annotations

from io import StringIO

from pyinfra import host
from pyinfra.api import deploy
from pyinfra.api.operation import OperationMeta
from pyinfra.facts.systemd import SystemdStatus
from pyinfra.operations import files, systemd

from llmfleet.hostpaths import ENV_FILE, HOME, UNIT_FILE, UNIT_NAME

from .accounts import secret_file, service_account
from .facts import PortListeners
from .plan import fail_host


def port_is_free(port: int, docker: bool = False) -> bool:
    """False (and the host failed) when a process outside our unit (or, for a docker
    release, our container's port proxy) holds the port."""
    listeners = host.get_fact(
        PortListeners,
        port=port,
        unit=f"{UNIT_NAME}.service",
        container=UNIT_NAME if docker else None,
    )
    if listeners:
        who = ", ".join(f"{x['process']} (pid {x['pid']})" for x in listeners)
        fail_host(
            f"{host.name}: port: {port} is already taken by {who} (fix: stop it or set "
            f"port to a free one)"
        )
        return False
    return True


@deploy("Server")
def serve_unit(unit_body: str, env_body: str, *, user: str) -> list[OperationMeta]:
    service_account(user, HOME, "Service")
    env = secret_file("Environment file (0600)", env_body, ENV_FILE)
    unit = files.put(name="systemd unit", src=StringIO(unit_body), dest=UNIT_FILE, mode="644")
    systemd.daemon_reload(name="Reload systemd", _if=unit.did_change)
    ops = [env, unit]
    # Starts the server on a first deploy. A running server whose release changed is
    # restarted inside the health gate (roles/health.py), which can put the previous
    # release back if the restart or the new release fails.
    ops.append(
        systemd.service(
            name="Enabled and running", service=f"{UNIT_NAME}.service", running=True, enabled=True
        )
    )
    return ops


def was_running() -> bool:
    return bool(host.get_fact(SystemdStatus).get(f"{UNIT_NAME}.service"))
