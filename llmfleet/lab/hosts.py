"""Lab hosts: real systemd machines booted with systemd-nspawn from the cached
base rootfs, each in its own network namespace, reachable over SSH.

The control machine runs no systemd (no machined, no D-Bus), so nspawn runs
with ``--register=no --keep-unit`` and is started detached by us; its PID is
the handle for status and shutdown.  Each host gets an overlayfs over the
shared base (a copy if overlayfs cannot be mounted), its own SSH host key
generated here beforehand (so ``known_hosts`` is written before the first
connection and SSH verifies hosts strictly), and root login by the lab key.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from . import cgroups, network
from .rootfs import remove_tree, umount_tree
from .state import LabError, run, state_dir

SSH_USER = "root"
BOOT_TIMEOUT = 180.0
STOP_TIMEOUT = 30.0

Host = dict[str, Any]


REBOOT_LOOP = "llmfleet.lab.reboot_loop"


def host_name(index: int) -> str:
    """``lab<index>``, 1-based."""
    return f"lab{index}"


def host_dir(name: str) -> Path:
    """Everything one host owns on the control side: root, overlay dirs, keys, log."""
    return state_dir() / "hosts" / name


def client_key() -> Path:
    """The lab's SSH client key (ed25519), made once per lab."""
    key = state_dir() / "id_ed25519"
    if not key.is_file():
        key.parent.mkdir(parents=True, exist_ok=True)
        run(
            ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "llmfleet-lab", "-f", key],
            "generating the lab SSH client key",
        )
    return key


def known_hosts_path() -> Path:
    """The known_hosts file covering every lab host (written before they boot)."""
    return state_dir() / "known_hosts"


def ssh_config_path() -> Path:
    """An ssh_config so a person can type ``ssh -F <state>/ssh_config lab1``."""
    return state_dir() / "ssh_config"


def host_record(
    index: int, proc_sys_writable: bool, docker: bool = False, light: bool = False
) -> Host:
    """The state entry of host ``index`` before it is started (pid None)."""
    name = host_name(index)
    hdir = host_dir(name)
    return {
        "name": name,
        "address": network.host_address(index),
        "ssh_user": SSH_USER,
        "ssh_key": str(client_key()),
        "known_hosts": str(known_hosts_path()),
        "netns": network.netns_name(name),
        "root": str(hdir / "root"),
        "pid": None,
        "proc_sys_writable": proc_sys_writable,
        "docker": docker,
        "light": light,
        "log": str(hdir / "nspawn.log"),
        "overlay": None,
        "boot_seconds": None,
        "cgroups": None,
    }


def subtree_of(host: Host) -> dict[str, str]:
    """The host's cgroup subtree per hierarchy: the recorded one, or where
    :func:`launch` would put it (for hosts found without a state entry)."""
    return host.get("cgroups") or cgroups.plan(host["name"])


def host_key(name: str) -> Path:
    """The host's SSH host key (private), generated on the control side once."""
    key = host_dir(name) / "ssh_host_ed25519_key"
    if not key.is_file():
        key.parent.mkdir(parents=True, exist_ok=True)
        run(
            ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"root@{name}", "-f", key],
            f"{name}: generating its SSH host key",
        )
    return key


def write_ssh_files(hosts: list[Host]) -> None:
    """known_hosts (name and address per host key) and a matching ssh_config."""
    lines, blocks = [], []
    for h in hosts:
        keytype, blob = host_key(h["name"]).with_suffix(".pub").read_text().split()[:2]
        lines.append(f"{h['name']},{h['address']} {keytype} {blob}\n")
        blocks.append(
            f"Host {h['name']} {h['address']}\n"
            f"  HostName {h['address']}\n"
            f"  User {h['ssh_user']}\n"
            f"  IdentityFile {h['ssh_key']}\n"
            "  IdentitiesOnly yes\n"
            f"  UserKnownHostsFile {h['known_hosts']}\n"
            "  StrictHostKeyChecking yes\n"
            "  BatchMode yes\n"
        )
    known_hosts_path().write_text("".join(lines))
    ssh_config_path().write_text("\n".join(blocks))


def ssh_argv(host: Host, *command: str, connect_timeout: int = 5) -> list[str]:
    """argv running ``command`` on a lab host over SSH with strict host-key checking."""
    return [
        "ssh",
        "-o",
        "BatchMode=yes",
        "-o",
        "StrictHostKeyChecking=yes",
        "-o",
        f"UserKnownHostsFile={host['known_hosts']}",
        "-o",
        "IdentitiesOnly=yes",
        "-o",
        f"ConnectTimeout={connect_timeout}",
        "-o",
        "LogLevel=ERROR",
        "-i",
        host["ssh_key"],
        f"{host['ssh_user']}@{host['address']}",
        *command,
    ]


def ssh_ok(host: Host, timeout: int = 5) -> bool:
    """Whether sshd on the host answers and lets the lab key in."""
    try:
        proc = subprocess.run(
            ssh_argv(host, "true", connect_timeout=timeout),
            capture_output=True,
            timeout=timeout + 5,
        )
    except subprocess.TimeoutExpired:
        return False
    return proc.returncode == 0


# --- root filesystem -------------------------------------------------------


def is_mounted(path: Path) -> bool:
    """Whether ``path`` itself is a mount point (per /proc/self/mountinfo)."""
    target = str(path.resolve())
    with open("/proc/self/mountinfo") as fh:
        return any(line.split()[4] == target for line in fh)


def ensure_root(host: Host, base: Path) -> None:
    """Give the host its own root: overlayfs (shares the base, cheap) or, where
    overlayfs cannot be mounted, a reflink/plain copy.  An existing root is
    kept, so a restarted host keeps what deploys installed on it."""
    hdir, root = host_dir(host["name"]), Path(host["root"])
    upper, work = hdir / "upper", hdir / "work"
    if host.get("overlay") is False and root.is_dir():
        return
    if is_mounted(root):
        host["overlay"] = True
        return
    for d in (root, upper, work):
        d.mkdir(parents=True, exist_ok=True)
    opts = f"lowerdir={base},upperdir={upper},workdir={work}"
    proc = subprocess.run(
        ["mount", "-t", "overlay", "overlay", "-o", opts, str(root)], capture_output=True, text=True
    )
    if proc.returncode == 0:
        host["overlay"] = True
        return
    # overlayfs unavailable (e.g. the state dir is itself on overlayfs): copy
    for d in (upper, work):
        shutil.rmtree(d, ignore_errors=True)
    root.rmdir()
    run(["cp", "-a", "--reflink=auto", base, root], f"{host['name']}: copying the base rootfs")
    host["overlay"] = False


def personalise_root(host: Host, all_hosts: list[Host], pubkey: str) -> None:
    """Per-host files: hostname, machine-id, /etc/hosts naming every lab host,
    the pre-generated SSH host key and the lab key in root's authorized_keys."""
    root, name = Path(host["root"]), host["name"]
    (root / "etc/hostname").write_text(name + "\n")
    mid = root / "etc/machine-id"
    if not mid.is_file() or not mid.read_text().strip():
        mid.write_text(uuid.uuid4().hex + "\n")
    lines = [
        "127.0.0.1\tlocalhost",
        "::1\tlocalhost ip6-localhost ip6-loopback",
        f"{network.GATEWAY}\tlab-control",
    ]
    lines += [f"{h['address']}\t{h['name']}" for h in all_hosts]
    (root / "etc/hosts").write_text("\n".join(lines) + "\n")
    key = host_key(name)
    for src, dst, mode in (
        (key, "ssh_host_ed25519_key", 0o600),
        (key.with_suffix(".pub"), "ssh_host_ed25519_key.pub", 0o644),
    ):
        target = root / "etc/ssh" / dst
        shutil.copyfile(src, target)
        os.chmod(target, mode)
    ssh_dir = root / "root/.ssh"
    ssh_dir.mkdir(mode=0o700, exist_ok=True)
    auth = ssh_dir / "authorized_keys"
    auth.write_text(pubkey.strip() + "\n")
    os.chmod(auth, 0o600)


def write_files(host: Host, files: dict[str, str], gone: tuple[str, ...] = ()) -> None:
    """Put ``files`` ({path in the host: text}) into the host's root and remove the
    paths in ``gone``: per-host configuration the lab owns (e.g. a docker host's
    apt source for the lab's Debian mirror)."""
    root = Path(host["root"])
    for path, text in files.items():
        target = root / path.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
        os.chmod(target, 0o644)
    for path in gone:
        (root / path.lstrip("/")).unlink(missing_ok=True)


# --- light hosts --------------------------------------------------------------

# A light host (``llmfleet lab up --light N``) is the same base rootfs booted with
# only what makes it a host: systemd (PID 1 and journald) and sshd.  D-Bus, logind
# and the consoles are masked, and sshd runs without PAM, so a login starts no
# logind session and no ``systemd --user`` (the most memory a login costs on a full
# host).  sshd logs at VERBOSE to a file the control side reads through the host's
# root: one "Starting session:" line per command or file transfer, which is how the
# control-plane benchmark counts SSH commands on the hosts, not by estimate.
SSHD_LOG = "/var/log/llmfleet-sshd.log"
LIGHT_FILES = {
    "/etc/ssh/sshd_config.d/llmfleet-light.conf": (
        "# llmfleet lab light host: no PAM (no logind session per login); every\n"
        "# session logged, for counting SSH commands per host\n"
        "UsePAM no\n"
        "LogLevel VERBOSE\n"
    ),
    "/etc/systemd/system/ssh.service.d/llmfleet-light.conf": (
        f"[Service]\nExecStart=\nExecStart=/usr/sbin/sshd -D $SSHD_OPTS -E {SSHD_LOG}\n"
    ),
}
LIGHT_MASKED = (
    "dbus.service",
    "dbus.socket",
    "systemd-logind.service",
    "console-getty.service",
    "getty.target",
    "cron.service",
)
SESSION_MARK = "Starting session:"
LOGIN_MARK = "Accepted publickey"


def set_light(host: Host, light: bool) -> None:
    """Make the host's root a light host's (or undo it): the sshd drop-ins and the
    masked units; takes effect at its next boot."""
    units = Path(host["root"]) / "etc/systemd/system"
    if light:
        write_files(host, LIGHT_FILES)
    else:
        write_files(host, {}, gone=tuple(LIGHT_FILES))
    for unit in LIGHT_MASKED:
        link = units / unit
        if light and not link.is_symlink():
            link.unlink(missing_ok=True)
            link.symlink_to("/dev/null")
        elif not light and link.is_symlink() and os.readlink(link) == "/dev/null":
            link.unlink()


def ssh_counts(host: Host) -> dict[str, int]:
    """What sshd on a light host has logged so far: ``sessions`` (one per command or
    file transfer) and ``logins`` (connections), read from its root on this side."""
    try:
        text = (Path(host["root"]) / SSHD_LOG.lstrip("/")).read_text(errors="replace")
    except FileNotFoundError:
        return {"sessions": 0, "logins": 0}
    return count_sessions(text)


def count_sessions(log_text: str) -> dict[str, int]:
    """Count sshd's VERBOSE log lines: sessions (commands, sftp) and logins."""
    lines = log_text.splitlines()
    return {
        "sessions": sum(SESSION_MARK in line for line in lines),
        "logins": sum(LOGIN_MARK in line for line in lines),
    }


# --- process ----------------------------------------------------------------


# What a host started with ``docker`` (``llmfleet lab up --docker``) gets on top, so
# dockerd and runc can run containers inside it (evidence in docs/lab-docker.md):
# - CAP_NET_ADMIN: nspawn drops it when it joins a network namespace we made; dockerd
#   needs it for its bridge, veths and iptables rules;
# - @keyring: runc gives every container its own session keyring (keyctl), and nspawn's
#   seccomp filter answers EPERM to the keyring calls;
# - bpf: on cgroup2 runc enforces the container's device list with an eBPF program
#   attached to its cgroup; nspawn's filter denies bpf() too;
# - /var/lib/docker on the control machine's file system: the host's root is an
#   overlayfs, and overlay2 cannot use an overlayfs as its upper layer.
# The environment adds SYSTEMD_NSPAWN_UNIFIED_HIERARCHY=1 (see nspawn_env).
DOCKER_NSPAWN_ARGS = ("--capability=CAP_NET_ADMIN", "--system-call-filter=@keyring bpf")


def docker_dir(name: str) -> Path:
    """A docker host's /var/lib/docker, on the control machine's own file system."""
    return host_dir(name) / "docker"


def nspawn_argv(host: Host) -> list[str]:
    """The systemd-nspawn command line.  ``--register=no --keep-unit``: there is
    no machined/D-Bus to register with or ask for a scope; the namespace is
    ours (network.py); ``--console=read-only`` puts the boot log in our log.
    A docker host gets :data:`DOCKER_NSPAWN_ARGS` and its own /var/lib/docker."""
    argv = [
        "systemd-nspawn",
        "--boot",
        f"--directory={host['root']}",
        f"--machine={host['name']}",
        f"--hostname={host['name']}",
        "--register=no",
        "--keep-unit",
        f"--network-namespace-path={network.netns_path(host['name'])}",
        "--console=read-only",
        "--link-journal=no",
        "--resolv-conf=off",
        "--timezone=off",
    ]
    if host.get("docker"):
        argv += [*DOCKER_NSPAWN_ARGS, f"--bind={docker_dir(host['name'])}:/var/lib/docker"]
    return argv


def nspawn_env(host: Host) -> dict[str, str]:
    """Environment for nspawn; ``SYSTEMD_NSPAWN_API_VFS_WRITABLE=1`` makes the
    container's /proc/sys writable so sysctl/tuning roles can be tested.  A docker
    host gets ``SYSTEMD_NSPAWN_UNIFIED_HIERARCHY=1``: the container sees a pure
    cgroup2 tree (its own subtree of the machine's unified hierarchy, writable),
    where dockerd and runc make their cgroups; on the hybrid layout nspawn mounts
    the v1 controller hierarchies read-only, and runc cannot create a cgroup there."""
    drop = ("SYSTEMD_NSPAWN_API_VFS_WRITABLE", "SYSTEMD_NSPAWN_UNIFIED_HIERARCHY")
    env = {k: v for k, v in os.environ.items() if k not in drop}
    if host["proc_sys_writable"]:
        env["SYSTEMD_NSPAWN_API_VFS_WRITABLE"] = "1"
    if host.get("docker"):
        env["SYSTEMD_NSPAWN_UNIFIED_HIERARCHY"] = "1"
    return env


def launch(host: Host) -> None:
    """Start the host's nspawn detached (own session, output to its log) in the
    host's own cgroup subtree (see :mod:`llmfleet.lab.cgroups`); sets pid."""
    host["cgroups"] = cgroups.plan(host["name"])
    cgroups.create(host["cgroups"])
    if host.get("docker"):
        docker_dir(host["name"]).mkdir(parents=True, exist_ok=True)
    log_path = Path(host["log"])
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        log.write(f"\n--- llmfleet lab: starting {host['name']} at {time.ctime()}\n".encode())
        log.flush()
        try:
            proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    REBOOT_LOOP,
                    "--cgroups",
                    json.dumps(host["cgroups"]),
                    *nspawn_argv(host),
                ],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=nspawn_env(host),
                start_new_session=True,
                close_fds=True,
            )
        except FileNotFoundError as exc:
            raise LabError(
                f"{host['name']}: systemd-nspawn not found; run scripts/lab-prereqs.sh"
            ) from exc
    host["pid"] = proc.pid
    host["started_at"] = time.time()


def pid_alive(pid: int | None) -> bool:
    """Whether ``pid`` is a live (not zombie) process; reaps it if it is our child."""
    if not pid:
        return False
    try:
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done == pid:
            return False
    except ChildProcessError:
        pass
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")


def is_running(host: Host) -> bool:
    """Whether the host's recorded nspawn is alive (and is that host's nspawn,
    not a recycled PID)."""
    pid = host.get("pid")
    if not pid_alive(pid):
        return False
    try:
        comm = Path(f"/proc/{pid}/comm").read_text().strip()
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except FileNotFoundError:
        return False
    if comm != "systemd-nspawn" and REBOOT_LOOP.encode() not in argv:
        return False
    # cmdline reads empty for a moment while the exec is still in progress
    return argv == [b""] or f"--machine={host['name']}".encode() in argv


def log_tail(host: Host, lines: int = 25) -> str:
    """Last lines of the host's nspawn log, for error messages."""
    try:
        text = Path(host["log"]).read_text(errors="replace")
    except FileNotFoundError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:])


def wait_for_ssh(host: Host, timeout: float = BOOT_TIMEOUT) -> float:
    """Block until the host's sshd lets the lab key in; returns seconds since
    launch.  Fails fast if nspawn died, with the log's tail in the error."""
    deadline = time.monotonic() + timeout
    while True:
        if not is_running(host):
            raise LabError(
                f"{host['name']}: systemd-nspawn exited during boot; "
                f"log {host['log']}:\n{log_tail(host)}"
            )
        if ssh_ok(host, timeout=3):
            return time.time() - host.get("started_at", time.time())
        if time.monotonic() > deadline:
            raise LabError(
                f"{host['name']}: no SSH on {host['address']}:22 after {timeout:.0f}s;"
                f" see {host['log']}:\n{log_tail(host)}"
            )
        time.sleep(0.5)


def first_child(pid: int | None) -> int | None:
    for task in Path(f"/proc/{pid}/task").glob("*") if pid else ():
        try:
            kids = (task / "children").read_text().split()
        except FileNotFoundError:
            continue
        if kids:
            return int(kids[0])
    return None


def isolation(host: Host) -> list[str]:
    """Problems with a running host's cgroup isolation (empty: it is isolated)."""
    pid = host.get("pid")
    nspawn = nspawn_of(pid) if pid else None
    leader = first_child(nspawn)
    return cgroups.check(host.get("cgroups") or {}, leader, {p for p in (pid, nspawn) if p})


def nspawn_of(pid: int) -> int | None:
    """The systemd-nspawn process: ``pid`` itself, or the reboot loop's child."""
    try:
        if Path(f"/proc/{pid}/comm").read_text().strip() == "systemd-nspawn":
            return pid
    except FileNotFoundError:
        return None
    return first_child(pid)


def container_leader(pid: int) -> int | None:
    """PID (control side) of the container's PID 1: nspawn's child."""
    return first_child(nspawn_of(pid))


def wait_gone(pid: int, timeout: float) -> bool:
    """Wait up to ``timeout`` for ``pid`` to exit; True if it did."""
    deadline = time.monotonic() + timeout
    while pid_alive(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.2)
    return True


def stop(host: Host, timeout: float = STOP_TIMEOUT) -> None:
    """Shut the host down cleanly (see ``stop_pid``) and forget its pid."""
    if is_running(host):
        stop_pid(host["pid"], host["name"], timeout)
    host["pid"] = None


def stop_pid(pid: int, name: str, timeout: float = STOP_TIMEOUT) -> None:
    """SIGTERM to nspawn makes it send SIGRTMIN+3 (halt) to the container's
    systemd, which shuts down in a second or two; if that does not finish in
    time, SIGKILL the container's PID 1 (killing its whole PID namespace),
    then nspawn.  (No machinectl: there is no machined here.)"""
    nspawn = nspawn_of(pid)
    leader = container_leader(pid)
    try:
        os.kill(pid, signal.SIGTERM)  # the reboot loop passes it on to nspawn
    except ProcessLookupError:
        return
    if wait_gone(pid, timeout):
        return
    for victim in (leader, nspawn, pid):
        if victim and pid_alive(victim):
            os.kill(victim, signal.SIGKILL)
    if not wait_gone(pid, 10):
        raise LabError(f"{name}: systemd-nspawn (pid {pid}) survived SIGKILL")


def kill_leftovers(name: str, timeout: float = 10, subtree: dict[str, str] | None = None) -> None:
    """SIGKILL every process still in the host's cgroup subtree and network
    namespace.  A nspawn killed with SIGKILL (OOM killer, a crashed session)
    orphans its container, which keeps running, holding the address and port
    22; a new container on the same namespace would then have SSH answered by
    the old one.  The subtree also holds an orphaned nspawn (it stays in the
    machine's network namespace), so it goes too."""
    subtree = subtree or cgroups.plan(name)
    try:
        cgroups.kill(subtree, timeout)
    except OSError as exc:
        raise LabError(f"{name}: cgroup subtree {subtree}: {exc}") from exc
    ns = network.netns_name(name)
    if not network.netns_path(name).exists():
        return
    deadline = time.monotonic() + timeout
    while True:
        out = run(
            ["ip", "netns", "pids", ns], f"{name}: listing processes in {ns}", check=False
        ).stdout
        pids = [int(p) for p in out.split() if p.isdigit()]
        if not pids:
            return
        if time.monotonic() > deadline:
            raise LabError(f"{name}: processes {pids} in netns {ns} survive SIGKILL")
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.2)


def remove(host: Host) -> None:
    """Stop the host and delete its root, overlay dirs, keys and log."""
    stop(host)
    kill_leftovers(host["name"], subtree=subtree_of(host))
    cgroups.remove(subtree_of(host))
    umount_tree(Path(host["root"]))
    remove_tree(host_dir(host["name"]))


def stray_nspawns() -> list[int]:
    """PIDs of nspawn processes booting a root under our state dir (a lost state
    file must not leave containers running)."""
    marker = f"--directory={state_dir() / 'hosts'}/".encode()
    pids = []
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
        except (FileNotFoundError, PermissionError, ProcessLookupError):
            continue
        if argv and argv[0].endswith(b"systemd-nspawn") and any(a.startswith(marker) for a in argv):
            pids.append(int(proc.name))
    return pids
