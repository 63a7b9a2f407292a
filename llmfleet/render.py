"""Recipe + deployment -> engine argv, environment, docker options, systemd unit.

Only the model path, bind address, port and served name come from the
deployment; every other flag is the guide's, in the guide's order, with
overlays and explicit overrides applied in place.  The same function feeds
``llmfleet recipes render`` and the serve deploy, so what you preview is
what runs.
"""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import asdict, dataclass, field
from typing import Any

import jinja2

from . import args as argmod
from .catalog import Catalog, Hardware, Overlay, Recipe
from .deployment import Deployment
from .errors import Problem, ValidationError
from .parallel import Parallelism, parallelism
from .paths import templates_dir

PLACEHOLDER = re.compile(r"\{(\w+)\}")
LAUNCHERS_IN_VENV = {"vllm", "python", "python3", "sglang"}
UNIT_NAME = "llmfleet-serve"


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

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["parallel"] = asdict(self.parallel)
        return data


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


def _multinode(
    flags: list[argmod.Flag],
    table: dict[str, Any],
    nodes: int,
    rank: int,
    dep: Deployment,
    host: str,
) -> list[argmod.Flag]:
    if nodes <= 1:
        return flags
    if not 0 <= rank < nodes:
        raise ValidationError([Problem(host, "node_rank", f"{rank} is outside 0..{nodes - 1}")])
    mn = table["multinode"]
    addr = dep.master_addr or "<master-addr>"
    if mn.get("master_port"):
        addr = f"{addr}:{dep.dist_port or mn['master_port']}"
    extra = [
        (mn["nnodes"], [str(nodes)]),
        (mn["node_rank"], [str(rank)]),
        (mn["master_addr"], [addr]),
    ]
    if rank > 0:
        extra += [(name, []) for name in mn.get("worker_only", [])]
    return argmod.merge(flags, extra)


def render(catalog: Catalog, recipe: Recipe, dep: Deployment, rank: int | None = None) -> Rendered:
    hw = catalog.hw(recipe.hardware)
    table = catalog.engines[recipe.engine]
    host = dep.host_name
    env: dict[str, str] = {**hw.env, **recipe.env}
    flags = recipe.flags()
    for oid, raw in dep.overlays.items():
        flags = apply_overlay(flags, env, catalog.overlay(oid), raw, recipe, hw, host)
    flags = apply_overrides(flags, dep.flags)
    env.update(dep.env)
    values = {**asdict(dep)}
    env = {k: _fill(v, values, host, f"{k} in recipe {recipe.id}") for k, v in env.items()}
    rank = dep.node_rank if rank is None else rank
    flags = _multinode(flags, table, recipe.nodes, rank, dep, host)

    defaults = recipe.deploy_defaults
    model = dep.model_path or dep.model_repo or recipe.model["repo"]
    bind = dep.bind or defaults.get("host", "0.0.0.0")
    port = int(dep.port or defaults.get("port", 8000))
    served = dep.served_name or defaults.get("served_name") or recipe.model["repo"]
    head = list(recipe.launcher)
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
    )


# --- systemd ---------------------------------------------------------------


def systemd_quote(arg: str) -> str:
    """Quote one ExecStart word: systemd splits on spaces and expands % and $."""
    arg = arg.replace("%", "%%").replace("$", "$$")
    if arg and not re.search(r"[\s\"'\\;]", arg):
        return arg
    return '"' + arg.replace("\\", "\\\\").replace('"', '\\"') + '"'


def env_quote(value: str) -> str:
    """EnvironmentFile values: single quotes keep JSON and colons literal."""
    if re.fullmatch(r"[A-Za-z0-9_./:@,+=-]*", value):
        return value
    if "'" not in value:
        return f"'{value}'"
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def exec_argv(r: Rendered, venv: str, env_file: str) -> list[str]:
    """The process systemd starts: venv binaries, docker run, or a set_env.sh wrapper."""
    if r.runtime == "docker":
        assert r.docker is not None
        entry = r.docker["entrypoint"]
        cmd = r.argv[len(entry) :] if r.argv[: len(entry)] == entry else r.argv
        env_args = [a for key in r.env for a in ("-e", key)]
        return [
            "/usr/bin/docker",
            "run",
            "--rm",
            "--name",
            UNIT_NAME,
            *r.docker["options"],
            *env_args,
            r.docker["image"],
            *cmd,
        ]
    argv = list(r.argv)
    if argv[0] in LAUNCHERS_IN_VENV:
        argv[0] = f"{venv}/bin/{argv[0]}"
    if r.env_scripts:
        sources = "; ".join(f"source {shlex.quote(s)}" for s in r.env_scripts)
        return ["/bin/bash", "-c", f'{sources}; exec "$@"', UNIT_NAME, *argv]
    return argv


def jinja_env() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(templates_dir())),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        autoescape=False,
    )
    env.filters["envquote"] = env_quote
    return env


def unit_text(
    r: Rendered,
    *,
    user: str,
    group: str,
    venv: str,
    env_file: str,
    working_directory: str,
    release_dir: str,
    source: str,
    supplementary_groups: list[str] | None = None,
    hardening: bool = True,
) -> str:
    exec_start = " ".join(systemd_quote(a) for a in exec_argv(r, venv, env_file))
    return (
        jinja_env()
        .get_template("llmfleet-serve.service.j2")
        .render(
            recipe_id=r.id,
            engine=r.engine,
            runtime=r.runtime,
            user=user,
            group=group,
            supplementary_groups=supplementary_groups or [],
            env_file=env_file,
            unset_env=r.unset_env,
            working_directory=working_directory,
            exec_start=exec_start,
            container_name=UNIT_NAME,
            unit_name=UNIT_NAME,
            release_dir=release_dir,
            source=source,
            hardening=hardening,
        )
    )


def env_file_text(r: Rendered, extra: dict[str, str] | None = None) -> str:
    env = {**r.env, **(extra or {})}
    return jinja_env().get_template("llmfleet-serve.env.j2").render(recipe_id=r.id, env=env)
