"""Rendered argv -> the systemd unit and 0600 environment file a release is made of.

Templates are in ``files/templates/``.  The serve deploy, ``llmfleet plan
--unit`` and ``llmfleet recipes render --unit`` all call ``unit_text`` with
the same inputs from the plan, so a preview is the file the deploy writes,
byte for byte.
"""

from __future__ import annotations

import re
import shlex

import jinja2

from . import hostpaths as hp
from .paths import templates_dir
from .render import Rendered


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


CONTAINER_ENV_FILE = "/run/llmfleet/serve.env"
# The container's entrypoint: the env file is read inside the container, so neither
# argv nor `docker inspect` ever holds a value from it (the endpoint key).
CONTAINER_SH = f'set -a; . {CONTAINER_ENV_FILE}; set +a; exec "$@"'


def hf_mount_target(options: list[str], hf_home: str) -> str | None:
    """Where a docker recipe mounts the host's HF cache (``-v HF_HOME:TARGET``)."""
    for flag, value in zip(options, options[1:], strict=False):
        if flag in ("-v", "--volume") and value.split(":")[0] == hf_home:
            return value.split(":")[1]
    return None


def _read_only_cache(options: list[str], hf_home: str) -> list[str]:
    """The guide's options, with the shared HF cache mounted read-only: the deploy
    pulled and verified it; the engine only reads it."""
    out = list(options)
    for i, (flag, value) in enumerate(zip(options, options[1:], strict=False)):
        if flag in ("-v", "--volume") and value.split(":")[0] == hf_home and value.count(":") == 1:
            out[i + 1] = f"{value}:ro"
    return out


def exec_argv(r: Rendered, venv: str, image: str | None = None, hf_home: str = "") -> list[str]:
    """The process systemd starts: venv binaries, a set_env.sh wrapper, or ``docker run``
    of ``image`` (pinned by digest) with the env file read inside the container."""
    argv = list(r.argv)
    if r.runtime == "docker":
        assert r.docker is not None and image, "a docker release runs a pinned image"
        return [
            "/usr/bin/docker",
            "run",
            "--rm",
            "--name",
            hp.UNIT_NAME,
            "--pull",
            "never",
            *_read_only_cache(r.docker["options"], hf_home),
            "-v",
            f"{hp.ENV_FILE}:{CONTAINER_ENV_FILE}:ro",
            "--entrypoint",
            "/bin/sh",
            image,
            "-c",
            "; ".join([*(f". {shlex.quote(x)}" for x in r.env_scripts), CONTAINER_SH]),
            hp.UNIT_NAME,
            *argv,
        ]
    if argv[0] in r.venv_launchers:
        argv[0] = f"{venv}/bin/{argv[0]}"
    if r.env_scripts:
        sources = "; ".join(f"source {shlex.quote(s)}" for s in r.env_scripts)
        return ["/bin/bash", "-c", f'{sources}; exec "$@"', hp.UNIT_NAME, *argv]
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
    venv: str,
    source: str,
    supplementary_groups: list[str] | None = None,
    hardening: bool = True,
    image: str | None = None,
    hf_home: str = "",
    stop_timeout: int = 120,
) -> str:
    """The server unit: ``user`` runs ``venv``'s engine (or docker runs ``image``)."""
    exec_start = " ".join(systemd_quote(a) for a in exec_argv(r, venv, image, hf_home))
    return (
        jinja_env()
        .get_template("llmfleet-serve.service.j2")
        .render(
            recipe_id=r.id,
            engine=r.engine,
            runtime=r.runtime,
            user=user,
            group=user,
            supplementary_groups=supplementary_groups or [],
            env_file=hp.ENV_FILE,
            unset_env=r.unset_env,
            working_directory=hp.HOME,
            exec_start=exec_start,
            container_name=hp.UNIT_NAME,
            unit_name=hp.UNIT_NAME,
            release_dir=hp.CURRENT_RELEASE,
            source=source,
            hardening=hardening,
            stop_timeout=stop_timeout,
        )
    )


def env_file_text(r: Rendered, extra: dict[str, str] | None = None) -> str:
    env = {**r.env, **(extra or {})}
    return jinja_env().get_template("llmfleet-serve.env.j2").render(recipe_id=r.id, env=env)
