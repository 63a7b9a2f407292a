"""The lab's network: one Linux bridge on the control machine and, per host, a
network namespace wired into it by a veth pair.

The namespaces are made here, not by systemd-nspawn, because without systemd
on the control machine nspawn's own ``--network-veth`` has nobody to configure
the host side; with a ready namespace the container boots straight onto a
working, addressed interface and needs no network config of its own.  Hosts
reach each other over the bridge and the control machine (and the side
services bound there) at the gateway address.  No NAT: lab hosts have no
internet, which is what the baked rootfs and side services are for.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path

from .state import LabError, run

BRIDGE = "llmfl0"
GATEWAY = "10.213.0.1"
PREFIX = 24
NETNS_PREFIX = "llmfleet-"
VETH_PREFIX = "llmfl-"
HOST_IFACE = "eth0"
FIRST_HOST_OCTET = 10


def host_address(index: int) -> str:
    """Address of host ``lab<index>`` (1-based): 10.213.0.(10+index)."""
    net = ipaddress.ip_network(f"{GATEWAY}/{PREFIX}", strict=False)
    addr = net.network_address + FIRST_HOST_OCTET + index
    if addr not in net or addr == net.broadcast_address:
        raise LabError(f"lab{index}: no address left in {net} for host number {index}")
    return str(addr)


def netns_name(host: str) -> str:
    """The network namespace of a host: ``llmfleet-lab1``."""
    return f"{NETNS_PREFIX}{host}"


def netns_path(host: str) -> Path:
    """Where ``ip netns`` pins the namespace; nspawn joins it by this path."""
    return Path("/run/netns") / netns_name(host)


def veth_name(host: str) -> str:
    """Control-side end of the host's veth pair (IFNAMSIZ: at most 15 chars)."""
    name = f"{VETH_PREFIX}{host}"
    if len(name) > 15:
        raise LabError(f"{host}: interface name {name} is longer than 15 characters")
    return name


def link_exists(name: str, netns: str | None = None) -> bool:
    """Whether a network interface exists (in a namespace, if given)."""
    cmd = ["ip", *(["-n", netns] if netns else []), "link", "show", "dev", name]
    return run(cmd, f"checking interface {name}", check=False).returncode == 0


def ensure_bridge() -> None:
    """Create the bridge with the gateway address, or leave it as it is."""
    what = f"creating lab bridge {BRIDGE}"
    if not link_exists(BRIDGE):
        run(["ip", "link", "add", BRIDGE, "type", "bridge"], what)
    addrs = run(["ip", "-o", "-4", "addr", "show", "dev", BRIDGE], what).stdout
    if f" {GATEWAY}/{PREFIX} " not in addrs:
        run(["ip", "addr", "add", f"{GATEWAY}/{PREFIX}", "dev", BRIDGE], what)
    run(["ip", "link", "set", BRIDGE, "up"], what)


def remove_bridge() -> None:
    """Delete the bridge if it exists."""
    if link_exists(BRIDGE):
        run(["ip", "link", "del", BRIDGE], f"deleting lab bridge {BRIDGE}")


def host_net_ok(host: str, address: str) -> bool:
    """Whether the host's namespace, veth and address are all in place."""
    ns = netns_name(host)
    if not netns_path(host).exists() or not link_exists(veth_name(host)):
        return False
    out = run(
        ["ip", "-n", ns, "-o", "-4", "addr", "show", "dev", HOST_IFACE],
        f"{host}: reading its address",
        check=False,
    ).stdout
    return f" {address}/{PREFIX} " in out


def ensure_host_net(host: str, address: str) -> None:
    """Give a host its namespace with ``eth0`` = ``address``/24 on the bridge and a
    default route via the gateway; rebuilt from scratch if any piece is off."""
    if host_net_ok(host, address):
        return
    remove_host_net(host)
    ns, veth = netns_name(host), veth_name(host)
    what = f"{host}: wiring netns {ns} into bridge {BRIDGE}"
    run(["ip", "netns", "add", ns], what)
    run(["ip", "link", "add", veth, "type", "veth", "peer", "name", HOST_IFACE, "netns", ns], what)
    run(["ip", "link", "set", veth, "master", BRIDGE, "up"], what)
    run(["ip", "-n", ns, "link", "set", "lo", "up"], what)
    run(["ip", "-n", ns, "addr", "add", f"{address}/{PREFIX}", "dev", HOST_IFACE], what)
    run(["ip", "-n", ns, "link", "set", HOST_IFACE, "up"], what)
    run(["ip", "-n", ns, "route", "add", "default", "via", GATEWAY], what)


def remove_host_net(host: str) -> None:
    """Delete a host's veth, then its namespace.  The veth goes first: deleting
    the namespace destroys the pair asynchronously, so a delete right after it
    races ("Cannot find device")."""
    veth = veth_name(host)
    if link_exists(veth):
        proc = run(["ip", "link", "del", veth], f"{host}: deleting veth {veth}", check=False)
        if proc.returncode != 0 and link_exists(veth):
            raise LabError(f"{host}: deleting veth {veth}: {proc.stderr.strip()}")
    if netns_path(host).exists():
        run(["ip", "netns", "del", netns_name(host)], f"{host}: deleting netns")


def leftover_hosts() -> list[str]:
    """Host names that still have a lab netns or veth, state or not, so ``down``
    can clean up after a crashed ``up`` or a lost state file."""
    names = set()
    out = run(["ip", "netns", "list"], "listing network namespaces", check=False).stdout
    for line in out.splitlines():
        ns = line.split()[0] if line.split() else ""
        if ns.startswith(NETNS_PREFIX):
            names.add(ns[len(NETNS_PREFIX) :])
    out = run(["ip", "-o", "link", "show"], "listing interfaces", check=False).stdout
    for line in out.splitlines():
        fields = line.split(":")
        if len(fields) > 1:
            ifname = fields[1].strip().split("@")[0]
            if ifname.startswith(VETH_PREFIX):
                names.add(ifname[len(VETH_PREFIX) :])
    return sorted(names)
