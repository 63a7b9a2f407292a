"""Weights only: resolve the recipe's model revision once, pull it on every host.

    pyinfra inventories/lab.py deploys/weights.py [--data weights_verify=true]

The same role the serve deploy runs, alone: to pre-stage weights on a new
fleet before the engine, to verify checksums on demand, or to repair a cache.
"""

from pyinfra import host

from llmfleet.errors import LlmfleetError
from roles import summary
from roles.plan import current, fail_host
from roles.pyenvs import PackageSource
from roles.weights import resolve_commit, weights, weights_options


def pull_weights() -> None:
    plan = current()
    if plan is None:
        return
    r, data = plan.rendered, plan.data
    endpoint = data.get("hf_endpoint")
    hf_home = data.get("hf_home") or "/var/lib/llmfleet/hf"
    try:
        commit = resolve_commit(
            r.model_repo, r.revision, data.get("hf_control_endpoint") or endpoint
        )
    except LlmfleetError as exc:
        fail_host(f"{host.name}: {exc}")
        return
    options = weights_options(data)
    summary.note(
        host.name,
        recipe=plan.recipe.id,
        model=f"{r.model_repo}@{commit[:12]}",
        weights="verified" if options["verify"] else "",
    )
    weights(
        repo=r.model_repo,
        commit=commit,
        hf_home=hf_home,
        endpoint=endpoint,
        source=PackageSource.from_data(data),
        ops=[],
        **options,
    )


summary.register("llmfleet weights")
pull_weights()
