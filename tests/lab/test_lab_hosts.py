"""The lab's hosts, end to end: a real 2-host lab booted with systemd-nspawn and
checked over real SSH with strict host-key checking.

These tests take over *the* lab (default state dir, bridge llmfl0): a lab you
had up is rebuilt and taken down at the end.  They need root and the packages
of scripts/lab-prereqs.sh; the first run builds the cached base rootfs
(about a minute or two with a nearby mirror).
"""

from __future__ import annotations

import http.server
import os
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from llmfleet.lab import hosts, lab, network, rootfs
from llmfleet.lab.state import load_state, state_dir

from .labkit import fresh_lab


def ssh(host: dict[str, Any], command: str, timeout: float = 60) -> subprocess.CompletedProcess:
    """Run ``command`` on a lab host with the lab key and known_hosts (strict)."""
    return subprocess.run(
        hosts.ssh_argv(host, command), capture_output=True, text=True, timeout=timeout
    )


def ssh_out(host: dict[str, Any], command: str) -> str:
    """Stdout of ``command`` on the host; fails the test on a non-zero exit."""
    proc = ssh(host, command)
    assert proc.returncode == 0, f"{host['name']}: `{command}` -> {proc.returncode}: {proc.stderr}"
    return proc.stdout.strip()


@pytest.fixture(scope="module")
def lab_state() -> Iterator[dict[str, Any]]:
    """A 2-host lab for the module; always taken down afterwards."""
    with fresh_lab(2) as state:
        yield state


@pytest.mark.lab
def test_two_hosts_come_up_with_addresses_and_keys(lab_state: dict[str, Any]) -> None:
    assert [h["name"] for h in lab_state["hosts"]] == ["lab1", "lab2"]
    assert [h["address"] for h in lab_state["hosts"]] == ["10.213.0.11", "10.213.0.12"]
    for host in lab_state["hosts"]:
        assert host["netns"] == f"llmfleet-{host['name']}"
        assert Path(host["ssh_key"]).is_file()
        assert host["proc_sys_writable"] is True
        assert hosts.is_running(host)
    assert load_state() == lab_state


@pytest.mark.lab
def test_systemd_is_pid1_and_system_running(lab_state: dict[str, Any]) -> None:
    for host in lab_state["hosts"]:
        assert ssh_out(host, "cat /proc/1/comm") == "systemd"
        assert ssh_out(host, "hostname") == host["name"]
        proc = ssh(host, "timeout 60 systemctl is-system-running --wait")
        state = proc.stdout.strip()
        failed = ssh(host, "systemctl --failed --no-legend").stdout
        assert state in ("running", "degraded"), f"{host['name']}: {state}; failed: {failed}"


@pytest.mark.lab
def test_host_keys_are_checked_strictly(lab_state: dict[str, Any], tmp_path: Path) -> None:
    host = lab_state["hosts"][0]
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    proc = subprocess.run(
        hosts.ssh_argv({**host, "known_hosts": str(empty)}, "true"),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert proc.returncode == 255
    assert "Host key verification failed" in proc.stderr
    # the other host's key must not verify this host either
    other = lab_state["hosts"][1]
    wrong = tmp_path / "wrong_known_hosts"
    line = Path(host["known_hosts"]).read_text().splitlines()[1]
    assert line.startswith(f"{other['name']},")
    wrong.write_text(
        line.replace(f"{other['name']},{other['address']}", f"{host['name']},{host['address']}")
        + "\n"
    )
    proc = subprocess.run(
        hosts.ssh_argv({**host, "known_hosts": str(wrong)}, "true"),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert proc.returncode == 255
    assert ssh(host, "true").returncode == 0


@pytest.mark.lab
def test_hosts_reach_each_other_by_address_and_name(lab_state: dict[str, Any]) -> None:
    one, two = lab_state["hosts"]
    for src, dst in ((one, two), (two, one)):
        ssh_out(src, f"ping -c1 -W3 {dst['address']}")
        ssh_out(src, f"ping -c1 -W3 {dst['name']}")
        ssh_out(src, f"ping -c1 -W3 {network.GATEWAY}")


@pytest.fixture
def gateway_http_server() -> Iterator[str]:
    """An HTTP server on the gateway address, like the side services."""
    server = http.server.ThreadingHTTPServer(
        (network.GATEWAY, 0), http.server.SimpleHTTPRequestHandler
    )
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://{network.GATEWAY}:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.lab
def test_hosts_reach_services_on_the_gateway(
    lab_state: dict[str, Any], gateway_http_server: str
) -> None:
    for host in lab_state["hosts"]:
        code = ssh_out(host, f"curl -sS -o /dev/null -w '%{{http_code}}' {gateway_http_server}")
        assert code == "200", f"{host['name']}: HTTP {code} from {gateway_http_server}"


@pytest.mark.lab
def test_hosts_have_no_internet_route_beyond_the_lab(lab_state: dict[str, Any]) -> None:
    host = lab_state["hosts"][0]
    route = ssh_out(host, "ip route get 10.213.0.12")
    assert "dev eth0" in route
    assert ssh_out(host, "ip -4 -o addr show dev eth0").split()[3] == f"{host['address']}/24"
    assert ssh_out(host, "ip route show default") == f"default via {network.GATEWAY} dev eth0"


@pytest.mark.lab
def test_proc_sys_is_writable(lab_state: dict[str, Any]) -> None:
    # net.* is per network namespace: safe to write without touching the control machine
    for host in lab_state["hosts"]:
        ssh_out(host, "sysctl -w net.core.somaxconn=4242")
        assert ssh_out(host, "sysctl -n net.core.somaxconn") == "4242"
    assert Path("/proc/sys/net/core/somaxconn").read_text().strip() != "4242"


@pytest.mark.lab
def test_status_reports_running_and_ssh(lab_state: dict[str, Any]) -> None:
    rows = lab.status()
    assert [(r["name"], r["running"], r["ssh"], r["cgroup"]) for r in rows] == [
        ("lab1", True, True, "isolated"),
        ("lab2", True, True, "isolated"),
    ]


@pytest.mark.lab
def test_up_again_is_a_noop(lab_state: dict[str, Any]) -> None:
    before = [(h["name"], h["pid"], h["started_at"]) for h in lab_state["hosts"]]
    started = time.monotonic()
    again = lab.up(hosts=2)
    assert time.monotonic() - started < 15
    assert [(h["name"], h["pid"], h["started_at"]) for h in again["hosts"]] == before
    for host in again["hosts"]:
        assert ssh_out(host, "cat /proc/1/comm") == "systemd"


@pytest.mark.lab
def test_up_repairs_a_killed_host(lab_state: dict[str, Any]) -> None:
    """SIGKILL on nspawn orphans the container; ``up`` must clear it, not reuse it."""
    victim = load_state()["hosts"][1]
    os.kill(victim["pid"], signal.SIGKILL)
    deadline = time.monotonic() + 10
    while hosts.is_running(victim) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert [r["running"] for r in lab.status()] == [True, False]
    repaired = lab.up(hosts=2)
    new = repaired["hosts"][1]
    assert new["pid"] != victim["pid"] and hosts.is_running(new)
    assert ssh_out(new, "cat /proc/1/comm") == "systemd"
    # exactly one container in the namespace: the orphan is gone
    pids = subprocess.run(
        ["ip", "netns", "pids", new["netns"]], capture_output=True, text=True, check=True
    ).stdout.split()
    inits = [p for p in pids if Path(f"/proc/{p}/comm").read_text().strip() == "systemd"]
    assert len(inits) == 1, f"{new['netns']} has {len(inits)} systemd instances"
    assert [r["ssh"] for r in lab.status()] == [True, True]


@pytest.mark.lab
def test_down_removes_everything_but_the_base(lab_state: dict[str, Any]) -> None:
    roots = [h["root"] for h in lab_state["hosts"]]
    lab.down()
    netns = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert "llmfleet-" not in netns
    assert not network.link_exists(network.BRIDGE)
    links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
    assert network.VETH_PREFIX not in links
    mounts = Path("/proc/self/mountinfo").read_text()
    assert not any(root in mounts for root in roots)
    assert hosts.stray_nspawns() == []
    assert load_state() is None
    assert not (state_dir() / "hosts").exists()
    assert rootfs.base_path().is_dir()
    assert lab.status() == []


# --- no root needed --------------------------------------------------------

DEB822 = """\
Types: deb
URIs: http://mirror.example/debian-security
Suites: bookworm-security
Components: main

Types: deb-src
URIs: http://src.example/debian
Suites: bookworm
Components: main

Types: deb
# a comment
URIs: http://mirror.example/debian/
Suites: bookworm bookworm-updates
Components: main contrib
"""


@pytest.mark.parametrize("layout", ["deb822", "classic"])
def test_mirror_comes_from_the_machines_apt_sources(tmp_path: Path, layout: str) -> None:
    (tmp_path / "sources.list.d").mkdir()
    if layout == "deb822":
        (tmp_path / "sources.list.d/debian.sources").write_text(DEB822)
    else:
        (tmp_path / "sources.list").write_text(
            "# deb http://old.example/debian bookworm main\n"
            "deb http://mirror.example/debian-security bookworm-security main\n"
            "deb [arch=amd64 signed-by=/k.gpg] http://mirror.example/debian/ bookworm main\n"
        )
    assert rootfs.apt_mirror(tmp_path) == "http://mirror.example/debian"


def test_no_bookworm_source_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "sources.list.d").mkdir()
    (tmp_path / "sources.list").write_text("deb http://x.example/debian trixie main\n")
    with pytest.raises(rootfs.LabError, match="no apt source for Debian bookworm"):
        rootfs.apt_mirror(tmp_path)
