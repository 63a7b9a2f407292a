"""Site registry role: Debian's ``docker-registry`` as a pull-through cache.

Hosts pull engine images (20+ GB for the vLLM and SGLang images) through it
(``image_registry: HOST:PORT``), so each layer leaves the upstream registry
once per site.  The package's own unit runs it; we own its config file and
restart it only when the config changed.

Debian's docker-registry (distribution 2.8) fetches a blob it does not hold
from upstream twice (once into its cache, once for the client) and once more
for every other client asking meanwhile: measured on the lab, two hosts pulling
one image cost three copies of it.  So the role also warms the cache with the
images the inventory's docker hosts will pull through it (their recipes' tags,
pinned now), one copy each, with ``files/scripts/llmfleet-registry-warm.py``
on the cache host; hosts deployed afterwards are served from the cache.
"""

from __future__ import annotations

import shlex
from io import StringIO
from pathlib import Path

from pyinfra import host, inventory
from pyinfra.api import FactBase, deploy
from pyinfra.facts.deb import DebPackages
from pyinfra.operations import apt, files, python, server, systemd

from llmfleet.catalog import load
from llmfleet.errors import LlmfleetError
from llmfleet.images import ImageRef
from llmfleet.plan import image_key, pin_image
from llmfleet.unitfile import jinja_env
from llmfleet.validate import plan_host

from .ready import wait_answers

PACKAGE = "docker-registry"
UNIT = "docker-registry.service"
CONFIG = "/etc/docker/registry/config.yml"
STORAGE = "/var/lib/docker-registry"
DOCKER_HUB = "https://registry-1.docker.io"
WARM_SCRIPT = "/opt/llmfleet/bin/llmfleet-registry-warm.py"
SCRIPTS = Path(__file__).resolve().parent.parent / "files" / "scripts"


def config_text(*, upstream: str, port: int, storage: str = STORAGE) -> str:
    return (
        jinja_env()
        .get_template("docker-registry.yml.j2")
        .render(upstream=upstream, port=int(port), storage=storage)
    )


def _wait_ready(port: int, timeout: int = 60) -> None:
    """The registry answers its API root (``/v2/``) or the deploy says why not."""
    wait_answers(f"http://127.0.0.1:{int(port)}/v2/", UNIT, "the site registry", timeout)


def fleet_images(port: int) -> set[tuple[ImageRef, frozenset[str]]]:
    """The images (as pulled, through this registry) of every inventory host whose
    ``image_registry`` is this host at ``port``; --limit does not narrow it."""
    names = {host.name, str(host.data.get("ssh_hostname") or host.name)}
    mine = {f"{n}:{int(port)}" for n in names}
    catalog = load()
    out = set()
    for h in inventory:
        data = dict(h.data.dict())
        plan = plan_host(catalog, h.name, data, str(data.get("ssh_hostname") or h.name))
        if plan.ok and plan.settings.image_registry in mine and (key := image_key(plan)):
            out.add(key)
    return out


def _refs(images: set[tuple[ImageRef, frozenset[str]]]) -> list[str]:
    """``repository@digest`` of each image, its tag pinned now through this registry."""
    return sorted(
        {f"{ref.repository}@{pin_image(ref, ins).rsplit('@', 1)[1]}" for ref, ins in images}
    )


def _pinned_now(images: set[tuple[ImageRef, frozenset[str]]]) -> list[str] | None:
    try:
        return _refs(images)
    except LlmfleetError:
        return None


class RegistryHolds(FactBase):
    """Whether the site registry's storage holds every blob of ``refs`` already."""

    def command(self, port: int, storage: str, refs: list[str]) -> str:
        args = " ".join(shlex.quote(r) for r in refs)
        return (
            f"python3 {WARM_SCRIPT} --check --port {int(port)} --storage "
            f"{shlex.quote(storage)} {args} 2>/dev/null || echo missing"
        )

    def process(self, output: list[str]) -> bool:
        return bool(output) and output[-1].strip() == "cached"

    def default(self) -> bool:
        return False


def _warm(port: int, storage: str, images: set[tuple[ImageRef, frozenset[str]]]) -> None:
    """Pin each image's tag now (through this registry, just started), then fetch each
    into the cache once, on the cache host."""
    refs = _refs(images)
    ok, out = host.run_shell_command(
        " ".join(
            [
                "python3",
                WARM_SCRIPT,
                f"--port {int(port)}",
                f"--storage {shlex.quote(storage)}",
                *map(shlex.quote, refs),
            ]
        )
    )
    text = "\n".join([*out.stdout_lines, *out.stderr_lines])
    if not ok:
        raise RuntimeError(f"{host.name}: warming the site registry failed:\n{text}")
    for line in out.stdout_lines:
        print(f"    [{host.name}] cached: {line}")


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
    images = fleet_images(port)
    if not images:
        return
    files.put(
        name="Cache warm-up script",
        src=str(SCRIPTS / "llmfleet-registry-warm.py"),
        dest=WARM_SCRIPT,
        mode="755",
    )
    refs = _pinned_now(images)  # None: the registry does not answer yet (first deploy)
    if refs is None or not host.get_fact(RegistryHolds, port=port, storage=STORAGE, refs=refs):
        python.call(
            name=f"Images in the cache ({len(images)}; one copy each from upstream)",
            function=_warm,
            port=port,
            storage=STORAGE,
            images=images,
        )
