"""Site registry role: Debian's ``docker-registry`` as a pull-through cache.

Hosts pull engine images (20+ GB for the vLLM and SGLang images) through it
(``image_registry: HOST:PORT``), so each layer leaves the upstream registry
once per site.  The package's own unit runs it; we own its config file and
restart it only when the config changed.
"""

from __future__ import annotations

import shlex
from io import StringIO

from pyinfra import host
from pyinfra.api import deploy
from pyinfra.facts.deb import DebPackages
from pyinfra.operations import apt, files, python, server, systemd

from llmfleet.unitfile import jinja_env

PACKAGE = "docker-registry"
UNIT = "docker-registry.service"
CONFIG = "/etc/docker/registry/config.yml"
STORAGE = "/var/lib/docker-registry"
DOCKER_HUB = "https://registry-1.docker.io"


def config_text(*, upstream: str, port: int, storage: str = STORAGE) -> str:
    return (
        jinja_env()
        .get_template("docker-registry.yml.j2")
        .render(upstream=upstream, port=int(port), storage=storage)
    )


def _wait_ready(port: int, timeout: int = 60) -> None:
    """The registry answers its API root (``/v2/``) or the deploy says why not."""
    probe = "import sys, urllib.request as u; u.urlopen(sys.argv[1], timeout=3)"
    url = f"http://127.0.0.1:{int(port)}/v2/"
    ok, out = host.run_shell_command(
        f"for i in $(seq {int(timeout)}); do python3 -c {shlex.quote(probe)} {url} "
        f"2>/dev/null && exit 0; sleep 1; done; journalctl -u {UNIT} -n 30 --no-pager -o cat; "
        "exit 1"
    )
    if not ok:
        raise RuntimeError(
            f"{host.name}: the site registry did not answer on port {port} within "
            f"{timeout}s:\n{out.stdout}"
        )


@deploy("Site registry")
def site_registry(*, port: int, upstream: str | None) -> None:
    ops: list = []
    if PACKAGE not in host.get_fact(DebPackages):  # refresh apt lists only to install
        ops.append(apt.packages(name=f"{PACKAGE} (Debian)", packages=[PACKAGE], update=True))
        ops.append(server.shell(name=f"Hold {PACKAGE}", commands=[f"apt-mark hold {PACKAGE}"]))
    conf = files.put(
        name="Registry config (pull-through cache)",
        src=StringIO(config_text(upstream=upstream or DOCKER_HUB, port=port)),
        dest=CONFIG,
        mode="644",
    )
    running = systemd.service(name="Registry running", service=UNIT, running=True, enabled=True)
    restarted = systemd.service(
        name="Registry picks up its config",
        service=UNIT,
        restarted=True,
        _if=conf.did_change,
    )
    python.call(
        name="Registry answers",
        function=_wait_ready,
        port=port,
        _if=lambda: any(op.did_change() for op in (running, restarted, *ops)),
    )
