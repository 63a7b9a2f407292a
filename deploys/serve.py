"""Serve deploy: plan -> engine -> weights -> server -> health, per host (per group for
a multi-node server, ``roles/group.py``).

    pyinfra inventories/lab.py deploys/serve.py
    pyinfra inventories/lambda.py deploys/serve.py --limit b200

A host that already is exactly its plan costs one SSH command (``roles/fastpath.py``
reads every fact a no-op would read in one round trip) and gets no operation.
Everything this applies is in the host's plan (``roles/plan.py`` builds it
with ``llmfleet/serveplan.py`` before any host is touched): settings parsed
against the schema, the commit, the engine, the unit and env file, the
release.  A host whose plan is invalid fails before anything touches it;
the other hosts go on, and the summary table at the end names every host
and what happened to it.
"""

from pyinfra import host
from pyinfra.operations.util import any_changed

from llmfleet.serveplan import ServePlan
from roles import summary
from roles.container import container_engine
from roles.engine import engine_env
from roles.fastpath import unchanged
from roles.group import group_health, group_watch
from roles.health import Target, health
from roles.plan import current
from roles.release import Releases, promote, stage
from roles.server import port_is_free, serve_unit, was_running
from roles.weights import weights


def serve(plan: ServePlan) -> None:
    s = plan.settings
    changed: list = []
    if plan.manifest.image:  # docker: the engine is the pinned image
        container_engine(s, plan.manifest.image, ops=changed)
    else:
        engine_env(spec=plan.engine, venv=plan.venv, ops=changed)
    weights(plan.weights, ops=changed)
    known = host.get_fact(Releases)
    staged = stage(plan)
    running = was_running()
    ops = serve_unit(plan.unit, plan.env, user=s.service_user)
    # if the new release fails its health check, the one that ran before comes back
    old = known.releases.get(known.current) if known.current != plan.release else None
    if plan.group:  # one server on several hosts: start, judge and revert together
        group_watch()
        group_health(
            plan.group.name,
            [m.host for m in plan.group.members],
            plan.manifest,
            changed=changed + ops + staged,
            timeout=s.health_timeout,
            revert=old,
            running=running,
        )
    else:
        health(
            target=Target.of(plan.manifest),
            changed=changed + ops + staged,
            timeout=s.health_timeout,
            revert=Target.of(old) if old else None,
            # a running server restarts only when its unit, env, engine or weights changed
            restart=any_changed(*changed, *ops) if running else False,
        )
    promote(plan.release, s.release_keep, known.current)


summary.register("llmfleet serve")
_plan = current()
# one probe first: a host already at its plan gets no operation at all (roles/fastpath.py)
if (
    _plan is not None
    and not unchanged(_plan)
    and port_is_free(_plan.rendered.port, docker=bool(_plan.manifest.image))
):
    serve(_plan)
