"""Recipe + host settings -> engine argv, environment and docker options.

Only the model path, bind address, port and served name come from the
deployment; every other flag is the guide's, in the guide's order, with
overlays and explicit overrides applied in place.  The same function feeds
``llmfleet recipes render``, ``llmfleet plan`` and the serve deploy, so what
you preview is what runs.  The unit and environment files around the argv
are ``llmfleet.unitfile``'s.
"""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import asdict, dataclass, field
from typing import Any

from . import args as argmod
from . import multinode
from .catalog import PLACEHOLDER, Catalog, Hardware, Overlay, Recipe
from .errors import Problem, ValidationError
from .multinode import NodeRole
from .parallel import Parallelism, parallelism
from .settings import Settings


@dataclass
class Rendered:
    id: str
    engine: str
    hardware: str
    argv: list[str]
    env: dict[str, str]
    docker: dict[str, Any] | None
    sysctl: dict[str, str]
    cpu_governor: str | None
    unset_env: list[str]
    env_scripts: list[str]
    runtime: str
    model_repo: str
    revision: str
    served_name: str
    host: str
    port: int
    rank: int
    master_addr: str | None
    parallel: Parallelism
    overlays: dict[str, str] = field(default_factory=dict)
    # launchers that live in the engine's venv (the engine record's venv_launchers)
    venv_launchers: tuple[str, ...] = ()
    # multi-node recipes: this host's rank, role and rendezvous ports (None: one node)
    node: NodeRole | None = None

    @property
    def role(self) -> str:
        """``head`` (serves the API) or ``worker``; a one-node server is its own head."""
        return self.node.role if self.node else multinode.HEAD

    def public(self) -> dict[str, Any]:
        """The JSON contract of ``recipes render --json``."""
        docker = (
            None
            if self.docker is None
            else {"image": self.docker["image"], "options": self.docker["options"]}
        )
        return {
            "id": self.id,
            "engine": self.engine,
            "argv": self.argv,
            "env": self.env,
            "docker": docker,
            "sysctl": self.sysctl,
        }


def _overlay_value(ov: Overlay, raw: str, hw: Hardware, host: str) -> str | None:
    """Resolve ``true``/a value against the overlay's parameter; ``false`` = off."""
    if raw == "false":
        return None
    param = ov.param
    if not param:
        return ""
    if raw in ("true", ""):
        raw = str(param.get("by_hardware", {}).get(hw.id, param.get("default", "")))
        if not raw:
            raise ValidationError(
                [
                    Problem(
                        host,
                        f"overlay.{ov.id}",
                        "needs a value",
                        fix=f"--set overlay.{ov.id}=VALUE ({ov.description})",
                    )
                ]
            )
    if param.get("type") == "int":
        lo, hi = param.get("min", 1), param.get("max", 1 << 30)
        if not raw.isdigit() or not lo <= int(raw) <= hi:
            raise ValidationError(
                [Problem(host, f"overlay.{ov.id}", f"{raw!r} is not an integer in {lo}..{hi}")]
            )
    if param.get("type") == "choice" and raw not in param["choices"]:
        raise ValidationError(
            [
                Problem(
                    host, f"overlay.{ov.id}", f"{raw!r} is not one of {', '.join(param['choices'])}"
                )
            ]
        )
    return raw


def apply_overlay(
    flags: list[argmod.Flag],
    env: dict[str, str],
    ov: Overlay,
    raw: str,
    recipe: Recipe,
    hw: Hardware,
    host: str,
) -> list[argmod.Flag]:
    spec = ov.engines.get(recipe.engine)
    if spec is None:
        raise ValidationError(
            [
                Problem(
                    host,
                    f"overlay.{ov.id}",
                    f"has no settings for {recipe.engine} (recipe {recipe.id})",
                    fix=f"it applies to: {', '.join(ov.engines)}",
                )
            ]
        )
    value = _overlay_value(ov, raw, hw, host)
    if value is None:
        return flags
    for line in spec.get("args", []):
        flags = argmod.merge(flags, argmod.parse(shlex.split(line.replace("{value}", value))))
    patch = spec.get("json_patch")
    if patch:
        found = argmod.find(flags, [patch["flag"]])
        if not found or not found[1]:
            raise ValidationError(
                [
                    Problem(
                        host,
                        f"overlay.{ov.id}",
                        f"recipe {recipe.id} has no {patch['flag']} to patch",
                        fix="pick a recipe that uses it (e.g. a latency/MTP recipe)",
                    )
                ]
            )
        doc = json.loads(found[1][0])
        doc[patch["key"]] = int(value) if value.isdigit() else value
        flags = argmod.set_flag(flags, patch["flag"], [json.dumps(doc)])
    env.update({k: str(v) for k, v in spec.get("env", {}).items()})
    return flags


def apply_overrides(flags: list[argmod.Flag], overrides: dict[str, str]) -> list[argmod.Flag]:
    """``true`` adds a bare switch, ``false`` drops the flag, else shell-split values."""
    for name, value in overrides.items():
        if not argmod.is_flag(name):
            raise ValidationError(
                [
                    Problem(
                        "-",
                        f"flag.{name}",
                        "is not a flag",
                        fix="write it as on the command line, e.g. flag.--max-model-len",
                    )
                ]
            )
        if value == "false":
            flags = argmod.remove_flag(flags, name)
        else:
            flags = argmod.set_flag(flags, name, [] if value == "true" else shlex.split(value))
    return flags


def _fill(text: str, values: dict[str, Any], host: str, where: str) -> str:
    def sub(m: re.Match[str]) -> str:
        name = m.group(1)
        if values.get(name) in (None, ""):
            raise ValidationError(
                [
                    Problem(
                        host,
                        name,
                        f"needed by {where}",
                        fix=f"set {name} in host data or --set {name}=...",
                    )
                ]
            )
        return str(values[name])

    return PLACEHOLDER.sub(sub, text)


def render(
    catalog: Catalog, recipe: Recipe, dep: Settings, host: str = "-", rank: int | None = None
) -> Rendered:
    """The engine's command line for ``recipe`` as ``dep`` (one host's settings) deploys it;
    problems are named for ``host``."""
    hw = catalog.hw(recipe.hardware)
    table = catalog.engines[recipe.engine]
    # a multi-node server's nodes talk over the group's network; the guide's env wins
    net = multinode.network_env(table, hw, dep)[0] if recipe.nodes > 1 else {}
    env: dict[str, str] = {**net, **hw.env, **recipe.env}
    flags = recipe.flags()
    for oid, raw in dep.overlays.items():
        flags = apply_overlay(flags, env, catalog.overlay(oid), raw, recipe, hw, host)
    flags = apply_overrides(flags, dep.flags)
    if dep.monitoring:  # the engine serves its metrics only with these (SGLang)
        for name in table["metrics"]["flags"]:
            if argmod.find(flags, [name]) is None:
                flags = argmod.set_flag(flags, name, [])
    env.update(dep.env)
    values = {**asdict(dep)}
    env = {k: _fill(v, values, host, f"{k} in recipe {recipe.id}") for k, v in env.items()}
    rank = (dep.node_rank or 0) if rank is None else rank
    flags, node = multinode.node_flags(flags, table, recipe, rank, dep, host)

    defaults = recipe.deploy_defaults
    model = dep.model_path or dep.model_repo or recipe.model["repo"]
    bind = dep.bind or defaults.get("host", "0.0.0.0")
    port = int(dep.port or defaults.get("port", 8000))
    served = dep.served_name or defaults.get("served_name") or recipe.model["repo"]
    worker = node is not None and node.role == multinode.WORKER
    head = list(recipe.worker_launcher if worker and recipe.worker_launcher else recipe.launcher)
    head += [model] if recipe.model_arg == "positional" else [recipe.model_arg, model]
    head += [
        table["host_flag"],
        bind,
        table["port_flag"],
        str(port),
        table["served_name_flag"],
        served,
    ]
    argv = head + argmod.unparse(flags)

    runtime = dep.runtime or recipe.runtime or ("docker" if recipe.container else "venv")
    docker = None
    if runtime == "docker":
        if not recipe.container and not dep.image:
            raise ValidationError(
                [
                    Problem(
                        host,
                        "runtime",
                        f"recipe {recipe.id} has no container image",
                        fix="--set image=REPO:TAG or runtime=venv",
                    )
                ]
            )
        container = recipe.container or {"entrypoint": [], "options": []}
        options = [
            o.replace("{port}", str(port)).replace("{hf_home}", dep.hf_home)
            for o in container.get("options", [])
        ]
        docker = {
            "image": dep.image or container["image"],
            "options": options,
            "entrypoint": list(container.get("entrypoint", [])),
        }
    return Rendered(
        id=recipe.id,
        engine=recipe.engine,
        hardware=hw.id,
        argv=argv,
        env=env,
        docker=docker,
        sysctl=dict(recipe.sysctl),
        cpu_governor=recipe.cpu_governor,
        unset_env=list(recipe.unset_env),
        env_scripts=list(recipe.env_scripts),
        runtime=runtime,
        model_repo=dep.model_repo or recipe.model["repo"],
        revision=str(dep.revision or recipe.model.get("revision", "main")),
        served_name=served,
        host=bind,
        port=port,
        rank=rank,
        master_addr=dep.master_addr,
        parallel=parallelism(flags, table, recipe.nodes),
        overlays=dict(dep.overlays),
        venv_launchers=tuple(table.get("venv_launchers", ())),
        node=node,
    )
