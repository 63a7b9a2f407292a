"""``llmfleet lab up|down|status``: a local lab of real systemd hosts over SSH.

``up`` is declarative and safe to repeat: running hosts are left alone, missing
or broken ones are (re)built and booted, and the state file is saved after
every step so ``down`` can always clean up, even after a failed ``up``.
``down`` removes everything ``up`` made except the cached base rootfs.

Side services (Hub mirror, wheelhouse, ...) live in ``llmfleet.lab.services``
when that module exists: ``start(state)`` is called once the network is up
(before the hosts boot, so they are there when a host first looks) and
``stop(state)`` before the network goes away.  The hook may fill
``state["services"]`` in place or return a dict that is merged into it.
"""

from __future__ import annotations

import importlib
import os
import shutil
from collections.abc import Collection
from pathlib import Path
from typing import Any

from . import cgroups, network, rootfs
from . import hosts as lab_hosts
from .state import STATE_VERSION, LabError, lab_lock, load_state, save_state, state_dir

REQUIRED_COMMANDS = ("debootstrap", "systemd-nspawn", "ip", "ssh", "ssh-keygen", "mount")
# What ``down`` deletes from the state dir (never the dir wholesale: it may be
# pointed anywhere with LLMFLEET_LAB_STATE).
STATE_ENTRIES = (
    "hosts",
    "services",
    "state.json",
    "id_ed25519",
    "id_ed25519.pub",
    "known_hosts",
    "ssh_config",
)


def up(
    hosts: int = 2,
    proc_sys_writable: bool | Collection[str] = True,
    boot_timeout: float = lab_hosts.BOOT_TIMEOUT,
    docker: bool | Collection[str] = False,
    monitor: bool = False,
    light: bool = False,
) -> dict[str, Any]:
    """Bring up ``hosts`` lab hosts (lab1..labN) and the side services; return the state.

    ``proc_sys_writable``: True/False for all hosts, or the names of the hosts
    whose /proc/sys is writable (so sysctl tuning can be tested on them).
    ``docker``: likewise, the hosts started so that docker can run containers
    in them (docs/lab-docker.md); with any, the side services also get the lab's
    Debian mirror, the outside registry and the engine image in it.
    ``monitor``: every host gets the Debian mirror (the monitor deploy installs
    Prometheus and the node exporter from it) and the last host, when there are two
    or more, a STAND-IN accelerator exporter (:mod:`llmfleet.lab.gpuexporter`).
    ``light``: every host is a light host (systemd and sshd only, sshd logging each
    session; :data:`llmfleet.lab.hosts.LIGHT_FILES`), cheap enough for 64 of them on
    a small machine; not with ``docker`` or ``monitor``.
    Hosts beyond N from an earlier ``up`` are removed."""
    if hosts < 1:
        raise LabError(f"lab up: need at least one host, got {hosts}")
    if light and (monitor or docker):
        raise LabError("lab up: light hosts run no docker and no monitoring (drop --light)")
    _check_prereqs()
    with lab_lock():
        _raise_inotify_instances(hosts)
        base = rootfs.ensure_base()
        state = load_state() or _new_state(base)
        network.ensure_bridge()
        _remove_extra_hosts(state, hosts)
        state["monitor"] = monitor
        state["hosts"] = [
            _plan_host(state, i, _writable(proc_sys_writable, i), _writable(docker, i), light)
            for i in range(1, hosts + 1)
        ]
        lab_hosts.write_ssh_files(state["hosts"])
        save_state(state)
        _services_hook("start", state)
        save_state(state)
        from . import services

        docker_hosts = any(h["want_docker"] for h in state["hosts"])
        if docker_hosts or monitor:
            services.start_debian_mirror(state)
        if docker_hosts:
            services.start_docker(state)
        else:
            services.stop_docker(state)
        save_state(state)
        booting = [h for h in state["hosts"] if _ensure_host(state, h, base)]
        for host in booting:
            host["boot_seconds"] = round(lab_hosts.wait_for_ssh(host, boot_timeout), 1)
            save_state(state)
        return state


def down(purge: bool = False) -> None:
    """Stop and remove every lab host, netns, veth, the bridge, the side services
    and the state; keep the cached base rootfs unless ``purge``."""
    with lab_lock():
        state = load_state()
        recorded = state["hosts"] if state else []
        for host in recorded:
            lab_hosts.stop(host)
        for pid in lab_hosts.stray_nspawns():
            lab_hosts.stop_pid(pid, f"stray systemd-nspawn {pid}")
        try:  # pidfiles and default ports: works with a lost state file too
            _services_hook("stop", state if state is not None else {})
            services_error = None
        except LabError as exc:  # a port still held: clean up the rest, then say so
            services_error = exc
        names = {h["name"] for h in recorded} | set(network.leftover_hosts())
        hosts_root = state_dir() / "hosts"
        if hosts_root.is_dir():
            names |= {p.name for p in hosts_root.iterdir()}
        subtrees = {h["name"]: lab_hosts.subtree_of(h) for h in recorded}
        for name in sorted(names):
            subtree = subtrees.get(name) or cgroups.plan(name)
            lab_hosts.kill_leftovers(name, subtree=subtree)
            cgroups.remove(subtree)
            network.remove_host_net(name)
            rootfs.umount_tree(lab_hosts.host_dir(name))
        network.remove_bridge()
        _remove_state_dir(purge)
        if purge:
            rootfs.purge_cache()
        if services_error is not None:
            raise services_error


def status() -> list[dict[str, Any]]:
    """Per host: name, address, whether its container runs and SSH answers, and
    ``cgroup``: "isolated" when the host has its own cgroup subtree in every
    hierarchy and nothing else is in it, else what is wrong (None: not running)."""
    state = load_state()
    if state is None:
        return []
    rows = []
    for host in state["hosts"]:
        running = lab_hosts.is_running(host)
        problems = lab_hosts.isolation(host) if running else []
        rows.append(
            {
                "name": host["name"],
                "address": host["address"],
                "running": running,
                "ssh": running and lab_hosts.ssh_ok(host, timeout=3),
                "pid": host.get("pid") if running else None,
                "proc_sys_writable": host.get("proc_sys_writable"),
                "docker": bool(host.get("docker")),
                "light": bool(host.get("light")),
                "cgroup": ("isolated" if not problems else "; ".join(problems))
                if running
                else None,
                "cgroups": host.get("cgroups"),
            }
        )
    return rows


# --- helpers ----------------------------------------------------------------


def _check_prereqs() -> None:
    """Fail early, with the fix, when not root or a needed tool is missing."""
    if os.geteuid() != 0:
        raise LabError("lab up: needs root (network namespaces, mounts, systemd-nspawn)")
    missing = [c for c in REQUIRED_COMMANDS if shutil.which(c) is None]
    if missing:
        raise LabError(f"lab up: missing {', '.join(missing)}; run scripts/lab-prereqs.sh")


# Every lab host's systemd, journald and udev-less services take inotify instances,
# counted per user (root, the same in every container: no user namespaces), and the
# kernel's default of 128 is spent by about 22 hosts: the 23rd boots but its
# systemd cannot start sshd ("no SSH after 180s").  Measured on light hosts: 5-6 each.
INOTIFY_PER_HOST = 8
INOTIFY_SPARE = 256
INOTIFY_SYSCTL = Path("/proc/sys/fs/inotify/max_user_instances")


def inotify_instances_needed(hosts: int, current: int) -> int:
    """The ``fs.inotify.max_user_instances`` a lab of ``hosts`` needs; never lower."""
    return max(current, INOTIFY_PER_HOST * hosts + INOTIFY_SPARE)


def _raise_inotify_instances(hosts: int) -> None:
    """Raise the machine's inotify instance limit for ``hosts`` lab hosts (a machine-wide
    sysctl; raising it costs nothing until used)."""
    try:
        current = int(INOTIFY_SYSCTL.read_text())
        wanted = inotify_instances_needed(hosts, current)
        if wanted > current:
            INOTIFY_SYSCTL.write_text(f"{wanted}\n")
    except OSError as exc:
        raise LabError(
            f"lab up: {hosts} hosts need fs.inotify.max_user_instances >= "
            f"{inotify_instances_needed(hosts, 0)} ({exc}); set it with sysctl"
        ) from exc


def _new_state(base: Path) -> dict[str, Any]:
    """A fresh state for a lab that does not exist yet."""
    return {
        "version": STATE_VERSION,
        "state_dir": str(state_dir()),
        "base_rootfs": str(base),
        "bridge": network.BRIDGE,
        "gateway": network.GATEWAY,
        "prefix": network.PREFIX,
        "ssh_key": str(lab_hosts.client_key()),
        "known_hosts": str(lab_hosts.known_hosts_path()),
        "ssh_config": str(lab_hosts.ssh_config_path()),
        "hosts": [],
        "services": {},
    }


def _writable(setting: bool | Collection[str], index: int) -> bool:
    """Resolve the per-host /proc/sys writability from ``up``'s argument."""
    if isinstance(setting, bool):
        return setting
    return lab_hosts.host_name(index) in setting


def _plan_host(
    state: dict[str, Any], index: int, writable: bool, docker: bool = False, light: bool = False
) -> dict[str, Any]:
    """The host's state entry: the recorded one if any (keeps pid), else a new one.
    ``want_writable``/``want_docker`` are what this ``up`` asks for;
    ``proc_sys_writable``/``docker`` stay what the running container was started
    with until it is (re)started."""
    name = lab_hosts.host_name(index)
    old = next((h for h in state["hosts"] if h["name"] == name), None)
    host = old if old is not None else lab_hosts.host_record(index, writable, docker)
    host["want_writable"] = writable
    host["want_docker"] = docker
    host["want_light"] = light
    return host


def _ensure_host(state: dict[str, Any], host: dict[str, Any], base: Path) -> bool:
    """Make one host right; True if it was (re)started and must be waited for."""
    name, address = host["name"], host["address"]
    pubkey = Path(host["ssh_key"]).with_suffix(".pub").read_text()
    wanted = host.pop("want_writable")
    docker = host.pop("want_docker", False)
    light = host.pop("want_light", False)
    if lab_hosts.is_running(host):
        same = (
            host["proc_sys_writable"] == wanted
            and bool(host.get("docker")) == docker
            and bool(host.get("light")) == light
        )
        if network.host_net_ok(name, address) and same:
            lab_hosts.personalise_root(host, state["hosts"], pubkey)  # refresh /etc/hosts
            _lab_files(state, host)
            return False
        lab_hosts.stop(host)
    lab_hosts.kill_leftovers(name, subtree=lab_hosts.subtree_of(host))
    host["proc_sys_writable"] = wanted
    host["docker"] = docker
    host["light"] = light
    network.ensure_host_net(name, address)
    lab_hosts.ensure_root(host, base)
    lab_hosts.personalise_root(host, state["hosts"], pubkey)
    lab_hosts.set_light(host, light)
    _lab_files(state, host)
    lab_hosts.launch(host)
    save_state(state)
    return True


def _lab_files(state: dict[str, Any], host: dict[str, Any]) -> None:
    """The apt source for the lab's Debian mirror on docker hosts (every host of a
    monitor lab), gone from the others; a monitor lab's STAND-IN accelerator exporter
    on its exporter host, gone from the others."""
    from . import debmirror, gpuexporter, services

    if host.get("docker") or state.get("monitor"):
        lab_hosts.write_files(host, services.debian_host_files(state))
    else:
        lab_hosts.write_files(host, {}, gone=(debmirror.SOURCES, debmirror.KEYRING))
    gpuexporter.place(host, gpuexporter.exporter_host(state) == host["name"])


def _remove_extra_hosts(state: dict[str, Any], count: int) -> None:
    """Remove hosts numbered above ``count`` (an earlier, bigger ``up``)."""
    keep = {lab_hosts.host_name(i) for i in range(1, count + 1)}
    for host in [h for h in state["hosts"] if h["name"] not in keep]:
        lab_hosts.remove(host)
        network.remove_host_net(host["name"])
        state["hosts"].remove(host)
    save_state(state)


def _services_hook(name: str, state: dict[str, Any]) -> None:
    """Call ``llmfleet.lab.services.<name>(state)`` if that module exists."""
    try:
        module = importlib.import_module("llmfleet.lab.services")
    except ModuleNotFoundError as exc:
        if exc.name == "llmfleet.lab.services":
            return
        raise
    hook = getattr(module, name, None)
    if hook is None:
        return
    result = hook(state)
    if isinstance(result, dict) and result is not state:
        state.setdefault("services", {}).update(result)


def _remove_state_dir(purge: bool = False) -> None:
    """Delete what the lab put in the state dir, then the dir if it is empty."""
    sdir = state_dir()
    for entry in STATE_ENTRIES:
        path = sdir / entry
        if entry == "services" and path.is_dir() and not purge:
            # the side services' logs stay for a post-mortem (next up appends)
            for item in path.iterdir():
                if item.suffix == ".log" and item.is_file():
                    continue
                rootfs.remove_tree(item) if item.is_dir() else item.unlink()
        elif path.is_dir() and not path.is_symlink():
            rootfs.remove_tree(path)
        elif path.exists() or path.is_symlink():
            path.unlink()
    if sdir.is_dir() and not any(sdir.iterdir()):
        sdir.rmdir()
