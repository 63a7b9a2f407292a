"""What a docker lab host is started with, and the lab's Debian mirror (no root, no lab)."""

from __future__ import annotations

from llmfleet.containers import runtime_doc
from llmfleet.lab import debmirror, hosts

DOCKER_ONLY = ("--capability", "--system-call-filter", "--bind")


def test_a_host_without_docker_boots_as_before(monkeypatch) -> None:
    host = {"name": "lab1", "root": "/r", "proc_sys_writable": True}
    argv = hosts.nspawn_argv(host)
    assert argv[:2] == ["systemd-nspawn", "--boot"]
    assert not [a for a in argv if a.startswith(DOCKER_ONLY)]
    monkeypatch.setenv("SYSTEMD_NSPAWN_UNIFIED_HIERARCHY", "1")  # not even from outside
    env = hosts.nspawn_env(host)
    assert "SYSTEMD_NSPAWN_UNIFIED_HIERARCHY" not in env
    assert env["SYSTEMD_NSPAWN_API_VFS_WRITABLE"] == "1"


def test_a_docker_host_gets_what_dockerd_and_runc_need() -> None:
    host = {"name": "lab2", "root": "/r", "proc_sys_writable": True, "docker": True}
    plain = hosts.nspawn_argv({**host, "docker": False})
    assert hosts.nspawn_argv(host) == [
        *plain,
        "--capability=CAP_NET_ADMIN",
        "--system-call-filter=@keyring bpf",
        f"--bind={hosts.docker_dir('lab2')}:/var/lib/docker",
    ]
    assert hosts.nspawn_env(host)["SYSTEMD_NSPAWN_UNIFIED_HIERARCHY"] == "1"


def test_the_lab_mirror_holds_the_fleets_docker_pin() -> None:
    doc = runtime_doc()
    assert debmirror.wanted() == [
        f"docker.io={doc['versions']['debian12']}",
        "docker-registry",
        # the monitor deploy's packages (roles/monitor.py installs these names)
        "prometheus-node-exporter",
        "prometheus",
        "prometheus-alertmanager",
    ]
    files = debmirror.host_files("http://10.213.0.1:8091/debian", "KEY\n")
    assert files[debmirror.KEYRING] == "KEY\n"
    assert "URIs: http://10.213.0.1:8091/debian\n" in files[debmirror.SOURCES]
    assert f"Signed-By: {debmirror.KEYRING}\n" in files[debmirror.SOURCES]
