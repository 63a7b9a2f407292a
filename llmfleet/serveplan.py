"""The plan is the deploy: everything the serve roles apply, decided before any host
is touched.

``build_serve_plan`` takes one host's validated settings and recipe, the
commit its revision resolved to (once, on the control node) and its endpoint
key, and fixes: the engine environment and its path, the model directory,
the argv, the unit and environment file texts, the release id and its
manifest.  The roles only apply this; ``llmfleet plan --unit`` prints the
same texts, so a preview is byte for byte what the deploy writes.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from .catalog import Catalog, Recipe
from .engineenv import EngineSpec, PackageSource, engine_spec, venv_path
from .errors import Problem, ValidationError
from .grouplife import group_env
from .hostpaths import snapshot_dir
from .manifest import ReleaseManifest, release_id
from .render import Rendered, render
from .servegroup import ServeGroup
from .settings import Settings
from .unitfile import env_file_text, hf_mount_target, unit_text


@dataclass(frozen=True)
class WeightsPlan:
    """One pinned snapshot for one host, and where it comes from."""

    repo: str
    commit: str
    hf_home: str
    endpoint: str | None
    source: PackageSource
    workers: int
    include: list[str]
    verify: bool
    hub_requirement: str
    # fan-out without a mirror: copy from ``peer`` (at ``peer_address``), or serve peers
    peer: str | None = None
    peer_address: str | None = None
    serves_peers: bool = False
    peer_port: int = 8099
    # swarm: every member (host, address, port) of the run pulling this snapshot
    swarm: tuple[tuple[str, str, int], ...] = ()
    piece_mb: int = 16

    @property
    def label(self) -> str:
        return f"{self.repo}@{self.commit[:12]}"


@dataclass(frozen=True)
class ServePlan:
    host: str
    settings: Settings
    recipe: Recipe
    rendered: Rendered
    engine: EngineSpec
    venv: str
    weights: WeightsPlan
    unit: str
    env: str
    manifest: ReleaseManifest
    # multi-node: the whole server this host is a member of (its serve_group)
    group: ServeGroup | None = None

    @property
    def release(self) -> str:
        return self.manifest.id

    @property
    def role(self) -> str:
        """``head`` (rank 0, or a one-node server: judged by HTTP and a completion) or
        ``worker`` (headless: judged by its process and its connection to rank 0)."""
        return self.rendered.role

    @property
    def model_dir(self) -> str:
        return snapshot_dir(self.weights.hf_home, self.weights.repo, self.weights.commit)


def weights_plan(
    s: Settings,
    repo: str,
    commit: str,
    peer_address: str | None,
    serves_peers: bool,
    swarm: tuple[tuple[str, str, int], ...] = (),
) -> WeightsPlan:
    return WeightsPlan(
        repo=repo,
        commit=commit,
        hf_home=s.hf_home,
        endpoint=s.hf_endpoint,
        source=PackageSource.from_settings(s),
        workers=s.weights_workers,
        include=list(s.weights_include),
        verify=s.weights_verify,
        hub_requirement=s.hub_requirement,
        peer=s.weights_peer if peer_address else None,
        peer_address=peer_address,
        serves_peers=serves_peers,
        peer_port=s.weights_peer_port,
        swarm=swarm,
        piece_mb=s.weights_piece_mb,
    )


def _cache_in_container(catalog: Catalog, recipe: Recipe, s: Settings, host: str) -> str:
    """Where the container sees the host's HF cache (the recipe's ``-v`` of it)."""
    first = render(catalog, recipe, s, host)
    assert first.docker is not None
    target = hf_mount_target(first.docker["options"], s.hf_home)
    if target is None:
        raise ValidationError(
            [
                Problem(
                    host,
                    "runtime",
                    f"recipe {recipe.id} runs in docker but mounts no {s.hf_home}",
                    fix='add "-v", "{hf_home}:/root/.cache/huggingface" to its options',
                )
            ]
        )
    return target


def build_serve_plan(
    catalog: Catalog,
    host: str,
    s: Settings,
    recipe: Recipe,
    weights: WeightsPlan,
    *,
    api_key: str | None = None,
    image: str | None = None,
    group: ServeGroup | None = None,
) -> ServePlan:
    """Everything the serve roles apply to ``host``, as text and typed records.
    ``image`` is the docker runtime's image pinned by digest (``name@sha256:...``);
    ``group`` the serve group ``s`` was resolved in (its rank and master address)."""
    table = catalog.engines[recipe.engine]
    spec = engine_spec(catalog, recipe, s)
    venv = venv_path(recipe, spec, s)
    docker = (s.runtime or recipe.runtime or ("docker" if recipe.container else "venv")) == "docker"
    # the engine reads the HF cache where it sees it: the host path, or the container's
    cache = _cache_in_container(catalog, recipe, s, host) if docker else s.hf_home
    # serve the pinned local snapshot; the served name stays what clients expect
    model_dir = snapshot_dir(cache, weights.repo, weights.commit)
    rendered = render(catalog, recipe, replace(s, model_path=s.model_path or model_dir), host)
    extra: dict[str, str] = {"HF_HUB_OFFLINE": "1", "HF_HOME": cache}
    key_env = table.get("api_key_env") if api_key else None
    if api_key and key_env:  # in the 0600 env file only, never argv
        extra[key_env] = api_key
    # a group member's env file names its group, role and rank 0, for the watchdog
    extra.update(group_env(rendered.node, group))
    unit = unit_text(
        rendered,
        user=s.service_user,
        venv=venv,
        source=f"{recipe.source['seed']} / {recipe.source['section']}",
        hardening=s.systemd_hardening,
        image=image,
        hf_home=s.hf_home,
        stop_timeout=s.container_stop_timeout,
    )
    env = env_file_text(rendered, extra)
    manifest = ReleaseManifest(
        id=release_id(unit, env),
        recipe=recipe.id,
        runtime=rendered.runtime,
        venv=venv if rendered.runtime == "venv" else None,
        packages=list(spec.packages),
        model_repo=weights.repo,
        revision=rendered.revision,
        commit=weights.commit,
        port=rendered.port,
        served_name=rendered.served_name,
        argv=rendered.argv,
        overrides=s.overrides(),
        api_key_env=key_env,
        image=image if docker else None,
        node=rendered.node,
    )
    return ServePlan(host, s, recipe, rendered, spec, venv, weights, unit, env, manifest, group)
