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


def exec_argv(r: Rendered, venv: str) -> list[str]:
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
            hp.UNIT_NAME,
            *r.docker["options"],
            *env_args,
            r.docker["image"],
            *cmd,
        ]
    argv = list(r.argv)
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
) -> str:
    """The server unit: ``user`` runs ``venv``'s engine (or docker runs the image)."""
    exec_start = " ".join(systemd_quote(a) for a in exec_argv(r, venv))
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
        )
    )


def env_file_text(r: Rendered, extra: dict[str, str] | None = None) -> str:
    env = {**r.env, **(extra or {})}
    return jinja_env().get_template("llmfleet-serve.env.j2").render(recipe_id=r.id, env=env)
