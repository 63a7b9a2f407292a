"""The router role: smg as ``llmfleet-router.service`` on a router host, from its plan.

``llmfleet/router.py`` decides everything (workers, policy, argv, unit, env
file, release); this role applies it: the pinned smg venv, a no-shell
account, the key launcher, the release directory, the 0600 env file and the
unit; a running router restarts only when one of them changed, and the
deploy waits for the router's own ``/health`` and reports its ``/readiness``.
"""

from __future__ import annotations

import shlex
from io import StringIO

from pyinfra import host, inventory
from pyinfra.api import deploy
from pyinfra.facts.files import Link
from pyinfra.facts.systemd import SystemdStatus
from pyinfra.operations import files, python, systemd

from llmfleet import hostpaths as hp
from llmfleet.apikeys import api_key_for
from llmfleet.catalog import load
from llmfleet.engineenv import PackageSource
from llmfleet.errors import LlmfleetError
from llmfleet.paths import files_dir
from llmfleet.router import (
    RouterPlan,
    check_keys,
    fleet_plans,
    manifest_text,
    router_key,
    router_plan,
    router_workers,
)
from llmfleet.settings import Settings

from .accounts import secret_file, service_account
from .plan import fail_host
from .pyenvs import ensure_venv
from .release import stage_files
from .run import current_run

READY_PY = r"""
import json, sys, time, urllib.request, urllib.error
port, bound = int(sys.argv[1]), float(sys.argv[2])
end = time.monotonic() + bound
while True:
    try:
        urllib.request.urlopen("http://127.0.0.1:%d/health" % port, timeout=3).read()
        break
    except Exception as exc:
        if time.monotonic() > end:
            print("router /health: no answer within %ds (%s)" % (bound, exc)); sys.exit(1)
        time.sleep(0.5)
try:
    body = urllib.request.urlopen("http://127.0.0.1:%d/readiness" % port, timeout=3).read()
except urllib.error.HTTPError as exc:
    body = exc.read()
print("router up; readiness: " + body.decode())
"""


def fleet() -> list:
    """Every inventory host planned once per run (no Hub or registry lookups)."""
    run = current_run()
    with run.lock:
        if run.router_plans is None:
            run.router_plans = fleet_plans(
                [(h.name, dict(h.data.dict())) for h in inventory], load()
            )
    return run.router_plans


def current_router(s: Settings) -> RouterPlan | None:
    """This host's router plan; None (after failing the host, when it is wrong)."""
    plans = fleet()
    workers, left = router_workers(plans)
    for problem in left:
        print(f"[{host.name}] warning: {problem}")
    catalog = load()
    try:
        key = router_key(host.name, s)
        worker_keys = {
            p.host: api_key_for(p.host, p.settings, catalog.engines[p.rendered.engine])
            for p in plans
            if p.host in {w.host for w in workers}
        }
        bad = check_keys(host.name, key, worker_keys)
        if bad:
            raise LlmfleetError("; ".join(str(b) for b in bad))
        return router_plan(host.name, s, workers, key)
    except LlmfleetError as exc:
        fail_host(str(exc) if str(exc).startswith(host.name) else f"{host.name}: {exc}")
        return None


def _wait_ready(port: int, bound: int = 60) -> None:
    ok, out = host.run_shell_command(f"python3 -c {shlex.quote(READY_PY)} {int(port)} {int(bound)}")
    if not ok:
        _, log = host.run_shell_command(f"journalctl -u {hp.ROUTER_UNIT} -n 30 --no-pager -o cat")
        raise RuntimeError(f"{host.name}: the router did not start:\n{out.stdout}\n{log.stdout}")
    print(f"    [{host.name}] {out.stdout.strip()}")


@deploy("Router")
def fleet_router(plan: RouterPlan, source: PackageSource, keep: int = 5) -> None:
    was_running = bool(host.get_fact(SystemdStatus).get(hp.ROUTER_UNIT))
    ops: list = []
    ensure_venv("Router", plan.spec.venv, [plan.spec.package], source, ops, parent=hp.TOOLS_DIR)
    service_account(hp.ROUTER_USER, hp.ROUTER_HOME, "Router")
    files.directory(name="Launcher directory", path=hp.BIN_DIR, mode="755")
    launcher = files.put(
        name="Router launcher (the key from the env file, never argv)",
        src=str(files_dir() / "scripts" / "llmfleet-router.py"),
        dest=hp.ROUTER_LAUNCHER,
        mode="755",
    )
    stage_files(
        "Router release",
        plan.release,
        plan.release_dir,
        manifest_text(plan),
        (hp.ROUTER_UNIT, plan.unit),
        ("router.env", plan.env),
    )
    env = secret_file("Router environment (0600)", plan.env, hp.ROUTER_ENV)
    unit = files.put(
        name="Router unit",
        src=StringIO(plan.unit),
        dest=hp.systemd_unit_file(hp.ROUTER_UNIT),
        mode="644",
    )
    systemd.daemon_reload(name="Reload systemd", _if=unit.did_change)
    changed = [launcher, env, unit, *ops]
    if was_running:
        systemd.service(
            name="Restart the router on change",
            service=hp.ROUTER_UNIT,
            restarted=True,
            _if=lambda: any(op.did_change() for op in changed),
        )
    started = systemd.service(
        name="Router enabled and running", service=hp.ROUTER_UNIT, running=True, enabled=True
    )
    python.call(
        name="Router answers (/health, /readiness)",
        function=_wait_ready,
        port=plan.port,
        _if=lambda: started.did_change() or any(op.did_change() for op in changed),
    )
    link = host.get_fact(Link, path=f"{hp.ROUTER_RELEASES}/current")
    current = link["link_target"] if link else None
    from .release import promote

    promote(plan.release, keep, current, root=hp.ROUTER_RELEASES)
