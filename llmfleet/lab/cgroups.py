"""Each lab host in its own cgroup subtree, in every hierarchy the machine mounts.

Without systemd on the control machine nobody makes a scope for a container,
so ``systemd-nspawn`` used to run in the launcher's cgroup (``/`` in every
hierarchy here).  With ``--keep-unit`` nspawn takes the cgroup it runs in as
the container's: every lab host's systemd then managed the *same* tree
(``/system.slice/llmfleet-serve.service`` held the engines of lab1 and lab2
together).  On the unified hierarchy a cgroup's ``cgroup.procs`` lists a
process outside the reader's PID namespace as ``0``; systemd reads that as
``-EIO``, so ``systemctl status`` failed with "Input/output error" and, worse,
killing a unit's cgroup stopped at the first foreign PID: an engine whose
main process crashed kept its children.

So every host gets ``<launcher's cgroup>/llmfleet-lab/<host>`` in every v1
controller hierarchy, in ``name=systemd`` and in the unified hierarchy, and
its nspawn is moved there before it execs (:func:`enter`, called from the
reboot loop in the child between fork and exec).  nspawn then, being
``--keep-unit``, puts itself into ``supervisor`` and the container into
``payload`` below that (on the hierarchy systemd uses), and bind-mounts only
that subtree writable into the container.  Subtrees are made under the
launcher's own cgroup, never above it, so a memory or pids limit the
launcher lives under still applies to the lab.

Layouts (:func:`layout`): ``hybrid`` (v1 controllers + ``name=systemd`` +
cgroup2 at ``/sys/fs/cgroup/unified``: this machine), ``legacy`` (v1 only)
and ``unified`` (pure cgroup2 at ``/sys/fs/cgroup``).  The same code serves
all three: one subtree per mounted hierarchy, read from the mount table.
On pure cgroup2 there is one hierarchy; controllers are enabled for the
subtree where the parent allows it (best effort: a parent holding processes
cannot delegate controllers, and the container's systemd runs fine without
them).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path

PARENT = "llmfleet-lab"
UNIFIED = "unified"  # our key for the cgroup2 hierarchy, whatever its mount point


@dataclass(frozen=True)
class Hierarchy:
    """One mounted cgroup hierarchy: ``key`` is how /proc/PID/cgroup names it
    (``cpu,cpuacct``, ``name=systemd``; ``unified`` for cgroup2)."""

    key: str
    mount: Path

    @property
    def v2(self) -> bool:
        return self.key == UNIFIED


def hierarchies(mountinfo: str | None = None) -> list[Hierarchy]:
    """Every mounted cgroup hierarchy, once each (the first mount point wins)."""
    if mountinfo is None:
        mountinfo = Path("/proc/self/mountinfo").read_text()
    found: dict[str, Hierarchy] = {}
    for line in mountinfo.splitlines():
        pre, sep, post = line.partition(" - ")
        if not sep:
            continue
        fields, tail = pre.split(), post.split()
        if len(fields) < 5 or len(tail) < 3 or tail[0] not in ("cgroup", "cgroup2"):
            continue
        if tail[0] == "cgroup2":
            key = UNIFIED
        else:
            opts = [o for o in tail[2].split(",") if o not in ("rw", "ro")]
            controllers = sorted(o for o in opts if "=" not in o and o not in _V1_OPTIONS)
            named = [o for o in opts if o.startswith("name=")]
            key = ",".join(controllers + named)
            if not key:
                continue
        found.setdefault(key, Hierarchy(key, Path(_unescape(fields[4]))))
    return list(found.values())


_V1_OPTIONS = {"noprefix", "xattr", "clone_children", "cpuset_v2_mode", "nosuid", "nodev"}


def _unescape(path: str) -> str:
    return path.replace("\\040", " ").replace("\\011", "\t").replace("\\134", "\\")


def layout(hs: list[Hierarchy] | None = None) -> str:
    """``unified``, ``hybrid``, ``legacy`` or ``none``."""
    hs = hierarchies() if hs is None else hs
    v2 = any(h.v2 for h in hs)
    v1 = any(not h.v2 for h in hs)
    return {(True, False): "unified", (True, True): "hybrid", (False, True): "legacy"}.get(
        (v2, v1), "none"
    )


def proc_paths(pid: int | str = "self", text: str | None = None) -> dict[str, str]:
    """``{hierarchy key: cgroup path}`` of a process, from /proc/PID/cgroup."""
    if text is None:
        text = Path(f"/proc/{pid}/cgroup").read_text()
    paths = {}
    for line in text.splitlines():
        hid, _, rest = line.partition(":")
        controllers, _, path = rest.partition(":")
        if hid == "0" and controllers == "":
            paths[UNIFIED] = path
        elif controllers:
            key = ",".join(
                sorted(c for c in controllers.split(",") if not c.startswith("name="))
                + [c for c in controllers.split(",") if c.startswith("name=")]
            )
            paths[key] = path
    return paths


def plan(name: str, pid: int | str = "self") -> dict[str, str]:
    """The host's subtree, per hierarchy: ``<pid's cgroup>/llmfleet-lab/<name>``.
    (A launcher that already runs in a lab subtree, e.g. the reboot loop of a
    host, is never the caller: ``lab up`` runs in the launcher's own cgroup.)"""
    mine = proc_paths(pid)
    out = {}
    for h in hierarchies():
        base = mine.get(h.key, "/")
        out[h.key] = "/" + "/".join(p for p in (*base.split("/"), PARENT, name) if p)
    return out


def fs_path(key: str, path: str, hs: list[Hierarchy] | None = None) -> Path | None:
    """Where cgroup ``path`` of hierarchy ``key`` is in the file system (None: not mounted)."""
    for h in hierarchies() if hs is None else hs:
        if h.key == key:
            return h.mount / path.lstrip("/")
    return None


def create(subtree: dict[str, str]) -> None:
    """mkdir the subtree in every hierarchy; on cgroup2 also enable every
    controller the parents can pass down (best effort, see the module doc)."""
    hs = hierarchies()
    for key, path in subtree.items():
        target = fs_path(key, path, hs)
        if target is None:
            continue
        _mkdirs(target, cpuset="cpuset" in key.split(","))
        if key == UNIFIED:
            _delegate_controllers(fs_path(key, "/", hs), target)


def _mkdirs(target: Path, cpuset: bool) -> None:
    """mkdir -p; a new v1 cpuset starts with no CPUs and no memory nodes, and
    attaching a process to it fails with ENOSPC, so each new level gets its
    parent's ``cpuset.cpus`` and ``cpuset.mems``."""
    missing = []
    node = target
    while not node.is_dir():
        missing.append(node)
        node = node.parent
    for node in reversed(missing):
        node.mkdir(exist_ok=True)
        if not cpuset:
            continue
        for knob in ("cpuset.cpus", "cpuset.mems"):
            mine = node / knob
            if mine.is_file() and not mine.read_text().strip():
                mine.write_text((node.parent / knob).read_text())


def _delegate_controllers(root: Path | None, target: Path) -> None:
    if root is None:
        return
    chain, node = [], target.parent
    while node != root and root in node.parents:
        chain.append(node)
        node = node.parent
    for node in reversed(chain):
        wanted = (node / "cgroup.controllers").read_text().split()
        if wanted:
            with contextlib.suppress(OSError):
                (node / "cgroup.subtree_control").write_text(" ".join(f"+{c}" for c in wanted))


def enter(subtree: dict[str, str], pid: int = 0) -> None:
    """Move ``pid`` (0: the caller) into the subtree in every hierarchy.  Raises
    OSError naming the hierarchy when one refuses."""
    hs = hierarchies()
    pid = pid or os.getpid()
    for key, path in subtree.items():
        target = fs_path(key, path, hs)
        if target is None:
            continue
        try:
            (target / "cgroup.procs").write_text(f"{pid}\n")
        except OSError as exc:
            raise OSError(exc.errno, f"moving pid {pid} into {target}: {exc.strerror}") from exc


def pids(subtree: dict[str, str]) -> dict[str, list[int]]:
    """Every process in the subtree (recursively), per hierarchy, as seen from here."""
    hs = hierarchies()
    out: dict[str, list[int]] = {}
    for key, path in subtree.items():
        target = fs_path(key, path, hs)
        found: list[int] = []
        if target is not None and target.is_dir():
            for procs in sorted(target.rglob("cgroup.procs")):
                with contextlib.suppress(OSError):
                    found += [int(p) for p in procs.read_text().split()]
        out[key] = found
    return out


def kill(subtree: dict[str, str], timeout: float = 10.0) -> list[int]:
    """SIGKILL everything in the subtree until it is empty; the pids it killed."""
    killed: set[int] = set()
    deadline = time.monotonic() + timeout
    while True:
        left = {p for ps in pids(subtree).values() for p in ps}
        if not left:
            return sorted(killed)
        if time.monotonic() > deadline:
            raise OSError(errno.EBUSY, f"processes {sorted(left)} survive SIGKILL")
        for pid in left:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        killed |= left
        time.sleep(0.2)


def remove(subtree: dict[str, str]) -> None:
    """rmdir the subtree, deepest cgroups first, in every hierarchy, then the
    shared ``llmfleet-lab`` parent if it is empty; cgroups still holding
    processes stay (the caller killed them first)."""
    hs = hierarchies()
    for key, path in subtree.items():
        target = fs_path(key, path, hs)
        if target is None or not target.is_dir():
            continue
        dirs = sorted((d for d in target.rglob("*") if d.is_dir()), key=lambda d: -len(d.parts))
        for d in [*dirs, target, target.parent]:
            with contextlib.suppress(OSError):
                d.rmdir()


NS_GET_PARENT = 0xB702  # _IO(0xb7, 0x2), linux/nsfs.h


def pid_ns_within(pid: int, ns: tuple[int, int], max_depth: int = 32) -> bool:
    """Whether ``pid``'s PID namespace is ``ns`` ((st_dev, st_ino) of a
    ``/proc/PID/ns/pid``) or nested below it: a container's own containers (docker
    in a lab host) run in a PID namespace of their own, a child of the host's.
    Raises OSError when the process is gone."""
    fd = os.open(f"/proc/{pid}/ns/pid", os.O_RDONLY)
    try:
        for _ in range(max_depth):
            st = os.fstat(fd)
            if (st.st_dev, st.st_ino) == ns:
                return True
            try:
                parent = fcntl.ioctl(fd, NS_GET_PARENT)
            except OSError:  # EPERM: no parent we may see (the initial namespace)
                return False
            os.close(fd)
            fd = parent
        return False
    finally:
        os.close(fd)


def check(subtree: dict[str, str], leader: int | None, allowed: set[int]) -> list[str]:
    """Problems with a running host's isolation (empty: isolated).

    The container's PID 1 (``leader``, as seen here) must sit inside the
    host's subtree in every hierarchy, and every process in the subtree must
    be the host's own: in the PID namespace of its PID 1 (or one nested in it:
    the host's own containers), or in ``allowed`` (its nspawn)."""
    if not subtree:
        return ["no cgroup subtree recorded (started by an older llmfleet: lab down, lab up)"]
    if not leader:
        return ["container PID 1 not found"]
    problems = []
    where = proc_paths(leader)
    for key, path in subtree.items():
        got = where.get(key)
        if got is None or not (got == path or got.startswith(path + "/")):
            problems.append(f"{key}: PID 1 is in {got}, not under {path}")
    try:
        st = os.stat(f"/proc/{leader}/ns/pid")
    except OSError:
        return [*problems, "container PID 1 vanished"]
    ns = (st.st_dev, st.st_ino)
    for key, found in pids(subtree).items():
        for pid in found:
            if pid in allowed:
                continue
            try:
                ours = pid_ns_within(pid, ns)
            except OSError:
                continue  # exited meanwhile
            if not ours:
                problems.append(f"{key}: pid {pid} in {subtree[key]} is not the host's")
    return problems
