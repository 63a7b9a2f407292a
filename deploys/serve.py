"""Serve deploy: validate -> engine -> weights -> server -> health, per host.

    pyinfra inventories/lab.py deploys/serve.py
    pyinfra inventories/lambda.py deploys/serve.py --limit b200

Everything host-specific comes from inventory/group data (see README).  A host
whose plan is invalid (unknown recipe, port taken, missing model revision)
fails before anything touches it; the other hosts go on, and the summary
table at the end names every host and what happened to it.
"""

from pyinfra import host
from pyinfra.operations.util import any_changed

from llmfleet.apikeys import api_key_for
from llmfleet.deployment import Deployment, override_items
from llmfleet.errors import LlmfleetError
from llmfleet.render import render
from roles import summary
from roles.engine import engine_env, engine_spec, venv_path
from roles.health import health
from roles.plan import ServePlan, current, fail_host
from roles.release import Releases, promote, release_id, stage
from roles.server import port_is_free, serve_unit, unit_files, was_running
from roles.weights import resolve_commit, snapshot_dir, weights, weights_options


def serve(plan: ServePlan) -> None:
    data, recipe = plan.data, plan.recipe
    dep = Deployment.from_host_data(data, host.name)
    spec = engine_spec(plan.catalog, recipe, data)
    venv = data.get("venv") or venv_path(recipe, spec)
    endpoint = data.get("hf_endpoint")
    commit = resolve_commit(
        plan.rendered.model_repo,
        plan.rendered.revision,
        data.get("hf_control_endpoint") or endpoint,
    )
    model_dir = snapshot_dir(dep.hf_home, plan.rendered.model_repo, commit)
    # Serve the pinned local snapshot; the served name stays what clients expect.
    dep.model_path = dep.model_path or model_dir
    dep.served_name = dep.served_name or plan.rendered.served_name
    rendered = render(plan.catalog, recipe, dep)
    summary.note(host.name, recipe=recipe.id, model=f"{rendered.model_repo}@{commit[:12]}")

    changed: list = []
    if rendered.runtime == "venv":
        engine_env(spec=spec, venv=venv, ops=changed)
    weights(
        repo=rendered.model_repo,
        commit=commit,
        hf_home=dep.hf_home,
        endpoint=endpoint,
        source=spec.source,
        ops=changed,
        **weights_options(data),
    )
    extra_env = (
        {"HF_HUB_OFFLINE": "1", "HF_HOME": dep.hf_home} if rendered.runtime == "venv" else {}
    )
    key = api_key_for(host.name, data, rendered.engine)
    if key:  # in the 0600 env file only, never argv
        extra_env["VLLM_API_KEY"] = key
    unit, env = unit_files(
        rendered,
        venv=venv,
        user=data.get("service_user", "llmfleet"),
        source=f"{recipe.source['seed']} / {recipe.source['section']}",
        extra_env=extra_env,
        hardening=bool(data.get("systemd_hardening", True)),
    )
    rid = release_id(unit, env)
    known = host.get_fact(Releases)
    manifest = {
        "id": rid,
        "recipe": recipe.id,
        "overrides": {k: str(v) for k, v in override_items(data).items()},
        "engine": {"runtime": rendered.runtime, "venv": venv, "packages": spec.packages},
        "model": {"repo": rendered.model_repo, "revision": rendered.revision, "commit": commit},
        "port": rendered.port,
        "served_name": rendered.served_name,
        "argv": rendered.argv,
    }
    summary.note(host.name, release=rid)
    staged = stage(rid, unit, env, manifest)
    running = was_running()
    ops = serve_unit(unit, env, user=data.get("service_user", "llmfleet"))
    # if the new release fails its health check, the one that ran before comes back
    old = known["current"]
    old_manifest = known["releases"].get(old) if old and old != rid else None
    revert = (
        {"id": old, "port": old_manifest["port"], "model": old_manifest["served_name"]}
        if old_manifest
        else None
    )
    health(
        port=rendered.port,
        model=rendered.served_name,
        changed=changed + ops + staged,
        timeout=int(data.get("health_timeout", 900)),
        revert=revert,
        release=rid,
        # a running server restarts only when its unit, env, engine or weights changed
        restart=any_changed(*changed, *ops) if running else False,
    )
    promote(rid, int(data.get("release_keep", 5)), known["current"])


summary.register("llmfleet serve")
_plan = current()
if _plan is not None and port_is_free(_plan.rendered.port):
    try:
        serve(_plan)
    except LlmfleetError as exc:
        fail_host(f"{host.name}: {exc}")
