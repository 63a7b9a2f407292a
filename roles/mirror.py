"""Site Hub mirror: olah as a systemd service on a cache host.

With N hosts per site pulling the same 400-800 GB checkpoint, each file
should leave the Hub once: hosts point ``hf_endpoint`` at the mirror, the
mirror fetches from its upstream (the Hub, or another mirror) on first request
and serves later requests from its cache.  olah is a maintained, self-hosted
Hub mirror that speaks the same API huggingface_hub uses, so nothing on the
hosts changes but the endpoint.
"""

from __future__ import annotations

import shlex
import urllib.parse
from io import StringIO

from pyinfra import host
from pyinfra.api import deploy
from pyinfra.facts.systemd import SystemdStatus
from pyinfra.operations import files, python, systemd

from llmfleet.engineenv import PackageSource
from llmfleet.hostpaths import MIRROR_CONFIG as CONFIG
from llmfleet.hostpaths import MIRROR_HOME as HOME
from llmfleet.hostpaths import MIRROR_UNIT as UNIT
from llmfleet.hostpaths import MIRROR_USER as USER
from llmfleet.hostpaths import TOOLS_DIR, systemd_unit_file
from llmfleet.unitfile import jinja_env

from .accounts import service_account
from .pyenvs import ensure_venv

OLAH = "olah==0.5.4"
VENV = f"{TOOLS_DIR}/olah"


def config_text(
    *,
    upstream: str,
    public_netloc: str,
    port: int,
    bind: str = "0.0.0.0",
    cache_size_limit: str = "2TB",
    olah: str = OLAH,
) -> str:
    up = urllib.parse.urlsplit(upstream)
    hub = up.netloc == "huggingface.co"  # its LFS files come from a CDN host
    return (
        jinja_env()
        .get_template("olah.toml.j2")
        .render(
            olah_version=olah.split("==")[-1],
            bind=bind,
            port=int(port),
            repos_path=f"{HOME}/repos",
            cache_size_limit=cache_size_limit,
            upstream_scheme=up.scheme or "https",
            upstream_netloc=up.netloc,
            upstream_lfs_netloc="cdn-lfs.huggingface.co" if hub else up.netloc,
            public_netloc=public_netloc,
        )
    )


def unit_text(upstream: str) -> str:
    return (
        jinja_env()
        .get_template("llmfleet-mirror.service.j2")
        .render(upstream=upstream, user=USER, home=HOME, venv=VENV, config=CONFIG)
    )


PROBE = (
    "import sys, urllib.request as u, urllib.error as e\n"
    "try:\n"
    "    u.urlopen(sys.argv[1], timeout=3)\n"
    "except e.HTTPError:\n"
    "    pass  # any HTTP answer means olah is serving (its / page errors on some versions)\n"
)


def _wait_ready(port: int, timeout: int = 120) -> None:
    url = f"http://127.0.0.1:{int(port)}/api/models/llmfleet/probe/revision/main"
    cmd = (
        f"for i in $(seq {int(timeout)}); do "
        f"python3 -c {shlex.quote(PROBE)} {url} 2>/dev/null && exit 0; sleep 1; done; "
        f"journalctl -u {UNIT} -n 30 --no-pager -o cat; exit 1"
    )
    ok, out = host.run_shell_command(cmd)
    if not ok:
        raise RuntimeError(
            f"{host.name}: the Hub mirror did not answer on port {port} within "
            f"{timeout}s:\n{out.stdout}"
        )


@deploy("Hub mirror")
def hub_mirror(
    *,
    upstream: str,
    public_netloc: str,
    port: int,
    source: PackageSource,
    cache_size_limit: str = "2TB",
) -> None:
    was_running = bool(host.get_fact(SystemdStatus).get(UNIT))
    ops: list = []
    ensure_venv("Hub mirror", VENV, [OLAH], source, ops, parent=TOOLS_DIR)
    service_account(USER, HOME, "Mirror")
    conf = files.put(
        name="olah config",
        dest=CONFIG,
        mode="644",
        src=StringIO(
            config_text(
                upstream=upstream,
                public_netloc=public_netloc,
                port=port,
                cache_size_limit=cache_size_limit,
            )
        ),
    )
    unit = files.put(
        name="Mirror unit",
        src=StringIO(unit_text(upstream)),
        dest=systemd_unit_file(UNIT),
        mode="644",
    )
    systemd.daemon_reload(name="Reload systemd", _if=unit.did_change)
    changed = [conf, unit, *ops]
    if was_running:
        systemd.service(
            name="Restart on change",
            service=UNIT,
            restarted=True,
            _if=lambda: any(op.did_change() for op in changed),
        )
    started = systemd.service(
        name="Mirror enabled and running", service=UNIT, running=True, enabled=True
    )
    python.call(
        name="Mirror answers",
        function=_wait_ready,
        port=port,
        _if=lambda: started.did_change() or any(op.did_change() for op in changed),
    )
