"""The running lab as pyinfra inventory hosts (read by ``inventories/lab.py``).

Every lab host gets the ``cpu`` hardware profile, the lab recipe, and the
lab's own side services as its Hub endpoint and package source, so a deploy
against the lab needs nothing from outside the machine.  Host keys are
checked against the known_hosts file the lab wrote before the hosts booted.
"""

from __future__ import annotations

from typing import Any

from .state import load_state, state_file

LAB_RECIPE = "lab-cpu-vllm-tiny"


def host_data(host: dict[str, Any], services: dict[str, Any]) -> dict[str, Any]:
    """pyinfra host data for one lab host record from the lab state."""
    data: dict[str, Any] = {
        "ssh_hostname": host["address"],
        "ssh_user": host.get("ssh_user", "root"),
        "ssh_key": host["ssh_key"],
        "ssh_known_hosts_file": host["known_hosts"],
        "ssh_strict_host_key_checking": "yes",
        "hardware": "cpu",
        "recipe": LAB_RECIPE,
    }
    optional = {
        "hf_endpoint": services.get("hub_url"),
        "engine_find_links": services.get("wheelhouse_url"),
        "engine_excludes": services.get("wheelhouse_excludes_url"),
        "uv_url": services.get("uv_url"),
        # the vendor stand-ins: used by deploys/onboard.py when a host is given a GPU profile
        "vendor_mirrors": services.get("vendor_mirrors"),
        "cann_installer_url": services.get("cann_installer_url"),
        "cann_sha256": services.get("cann_sha256"),
    }
    data.update({k: v for k, v in optional.items() if v})
    return data


def lab_hosts(state: dict[str, Any] | None = None) -> list[tuple[str, dict[str, Any]]]:
    """``[(name, data), ...]`` for every lab host; RuntimeError when no lab is up."""
    state = state if state is not None else load_state()
    if not state or not state.get("hosts"):
        raise RuntimeError(
            f"no lab is running (no hosts in {state_file()}): start one with `llmfleet lab up`"
        )
    services = state.get("services") or {}
    return [(h["name"], host_data(h, services)) for h in state["hosts"]]


DOCKER_RECIPE = "lab-cpu-vllm-tiny-docker"
SITE_REGISTRY_PORT = 5000


def docker_hosts(state: dict[str, Any] | None = None) -> list[tuple[str, dict[str, Any]]]:
    """The lab hosts running the docker path: the docker recipe, images pulled through
    a site registry on the first host (``deploys/registry.py``), which caches the lab's
    outside registry; both speak plain HTTP on the lab bridge."""
    state = state if state is not None else load_state()
    hosts = lab_hosts(state)
    outside = (state or {}).get("services", {}).get("registry")
    if not outside:
        raise RuntimeError(
            "the lab has no image registry: start it with `llmfleet lab up --docker`"
        )
    site = f"{hosts[0][1]['ssh_hostname']}:{SITE_REGISTRY_PORT}"
    docker = {
        "recipe": DOCKER_RECIPE,
        "image_registry": site,
        "insecure_registries": [site, outside],
        "registry_port": SITE_REGISTRY_PORT,
        "registry_upstream": f"http://{outside}",
    }
    return [(name, {**data, **docker}) for name, data in hosts]


MULTINODE_RECIPE = "lab-cpu-vllm-tiny-dp2"
MULTINODE_GROUP = "lab-pair"


def multinode_hosts(state: dict[str, Any] | None = None) -> list[tuple[str, dict[str, Any]]]:
    """The first two lab hosts as one serving group: one vLLM server, data parallel over
    both (rank 0 serves the API), ranks in inventory order, rank 0's lab address as the
    master address; the NIC is read from each host (docs/multinode.md)."""
    hosts = lab_hosts(state)
    if len(hosts) < 2:
        raise RuntimeError("the multi-node lab needs 2 hosts: `llmfleet lab up --hosts 2`")
    group = {"recipe": MULTINODE_RECIPE, "serve_group": MULTINODE_GROUP}
    return [(name, {**data, **group}) for name, data in hosts[:2]]


def monitor_hosts(state: dict[str, Any] | None = None) -> list[tuple[str, dict[str, Any]]]:
    """The lab hosts of ``llmfleet lab up --monitor``: the first runs Prometheus and
    Alertmanager (``deploys/monitor.py``), every host serves with its metrics on, and
    the host with the STAND-IN accelerator exporter is scraped as an NVIDIA host."""
    from .gpuexporter import VENDOR, exporter_host

    state = state if state is not None else load_state()
    hosts = lab_hosts(state)
    if not (state or {}).get("monitor"):
        raise RuntimeError("the lab was not started for monitoring: `llmfleet lab up --monitor`")
    stand_in = exporter_host(state or {})
    common = {"monitoring": True, "monitor_host": hosts[0][0]}
    return [
        (name, {**data, **common, **({"accelerator_exporter": VENDOR} if name == stand_in else {})})
        for name, data in hosts
    ]


LIGHT_RECIPE = "lab-cpu-stub"


def light_hosts(state: dict[str, Any] | None = None) -> list[tuple[str, dict[str, Any]]]:
    """The hosts of ``llmfleet lab up --light N`` serving the STAND-IN stub engine
    (recipe ``lab-cpu-stub``): the control-plane benchmark's fleet, where what a
    deploy costs is the toolkit's own work per host, not an engine's start-up."""
    state = state if state is not None else load_state()
    hosts = lab_hosts(state)
    if not all(h.get("light") for h in (state or {}).get("hosts", [])):
        raise RuntimeError("the lab's hosts are not light hosts: `llmfleet lab up --light N`")
    return [(name, {**data, "recipe": LIGHT_RECIPE}) for name, data in hosts]
