"""The lab's cgroup layout detection and its daemons' identity (no root, no lab)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from llmfleet.lab import cgroups, hub
from llmfleet.lab.state import LabError

HYBRID = """\
25 30 0:22 / /sys/fs/cgroup ro,nosuid,nodev,noexec shared:9 - tmpfs tmpfs ro,mode=755
26 25 0:23 / /sys/fs/cgroup/unified rw,nosuid,nodev,noexec,relatime shared:10 - cgroup2 cgroup2 rw
27 25 0:24 / /sys/fs/cgroup/systemd rw,nosuid shared:11 - cgroup cgroup rw,xattr,name=systemd
28 25 0:25 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid shared:12 - cgroup cgroup rw,cpu,cpuacct
29 25 0:26 / /sys/fs/cgroup/memory rw,nosuid shared:13 - cgroup cgroup rw,memory
30 25 0:26 / /mnt/again rw,nosuid shared:13 - cgroup cgroup rw,memory
"""
UNIFIED = "35 30 0:30 / /sys/fs/cgroup rw,nosuid shared:4 - cgroup2 cgroup2 rw,nsdelegate\n"
PROC_CGROUP = """\
9:name=systemd:/
4:memory:/process_api/78de
2:cpuacct,cpu:/
0::/
"""


def test_hybrid_layout_lists_each_hierarchy_once() -> None:
    hs = cgroups.hierarchies(HYBRID)
    assert [(h.key, str(h.mount)) for h in hs] == [
        ("unified", "/sys/fs/cgroup/unified"),
        ("name=systemd", "/sys/fs/cgroup/systemd"),
        ("cpu,cpuacct", "/sys/fs/cgroup/cpu,cpuacct"),
        ("memory", "/sys/fs/cgroup/memory"),
    ]
    assert cgroups.layout(hs) == "hybrid"


def test_pure_cgroup2_is_one_hierarchy() -> None:
    hs = cgroups.hierarchies(UNIFIED)
    assert [(h.key, str(h.mount)) for h in hs] == [("unified", "/sys/fs/cgroup")]
    assert cgroups.layout(hs) == "unified"
    assert cgroups.layout(cgroups.hierarchies(HYBRID.replace("cgroup2 cgroup2", "x x"))) == (
        "legacy"
    )


def test_proc_cgroup_keys_match_the_mount_keys() -> None:
    assert cgroups.proc_paths(text=PROC_CGROUP) == {
        "name=systemd": "/",
        "memory": "/process_api/78de",
        "cpu,cpuacct": "/",
        "unified": "/",
    }


def test_a_host_subtree_sits_under_the_launchers_own_cgroup(monkeypatch) -> None:
    monkeypatch.setattr(
        cgroups,
        "hierarchies",
        lambda mountinfo=None: [
            cgroups.Hierarchy(k, Path("/x")) for k in ("unified", "memory", "cpu,cpuacct")
        ],
    )
    monkeypatch.setattr(
        cgroups,
        "proc_paths",
        lambda pid="self", text=None: {
            "memory": "/process_api/78de",
            "unified": "/",
            "cpu,cpuacct": "/",
        },
    )
    assert cgroups.plan("lab1") == {
        "unified": "/llmfleet-lab/lab1",
        "memory": "/process_api/78de/llmfleet-lab/lab1",
        "cpu,cpuacct": "/llmfleet-lab/lab1",
    }


def test_isolation_needs_a_recorded_subtree() -> None:
    assert "no cgroup subtree recorded" in cgroups.check({}, 1, set())[0]


# --- side-service daemons ---------------------------------------------------------


@pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("unshare") is None, reason="a PID namespace needs root"
)
def test_a_process_in_a_nested_pid_namespace_belongs_to_the_outer_one() -> None:
    # docker in a lab host: the containers' processes are in PID namespaces below the
    # host's, and still the host's own (lab status must call the host isolated)
    st = os.stat("/proc/self/ns/pid")
    mine = (st.st_dev, st.st_ino)
    assert cgroups.pid_ns_within(os.getpid(), mine)
    outer = subprocess.Popen(["unshare", "--pid", "--fork", "--mount-proc", "sleep", "30"])
    inner = 0
    try:
        for _ in range(100):
            kids = Path(f"/proc/{outer.pid}/task/{outer.pid}/children").read_text().split()
            if kids:
                inner = int(kids[0])
                break
            time.sleep(0.05)
        assert inner, "unshare started no child"
        assert cgroups.pid_ns_within(inner, mine)
        st = os.stat(f"/proc/{inner}/ns/pid")
        assert not cgroups.pid_ns_within(os.getpid(), (st.st_dev, st.st_ino))
    finally:
        if inner:  # PID 1 of its namespace: only a kill from outside ends it
            os.kill(inner, signal.SIGKILL)
        outer.kill()
        outer.wait()


def test_a_daemon_is_known_by_pid_and_start_time_not_by_its_command_line(
    tmp_path: Path, monkeypatch
) -> None:
    """/proc/PID/cmdline reads empty while the kernel is still in execve after Popen
    returned: a daemon identified by its command line then looked dead at once."""
    d = hub.Daemon("sleeper", tmp_path, match="no-such-text")
    pid = d.start([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        monkeypatch.setattr(hub, "_cmdline", lambda pid: "")  # mid-exec
        assert d.pid() == pid
        fields = d.pidfile.read_text().split()
        d.pidfile.write_text(f"{pid} {int(fields[1]) + 1} 0\n")  # same pid, another process
        assert d.pid() is None
        d.pidfile.write_text(" ".join(fields))
    finally:
        assert d.stop()
    assert d.pid() is None


def test_a_daemon_that_exits_during_start_says_how_and_shows_this_starts_log(
    tmp_path: Path,
) -> None:
    d = hub.Daemon("failing", tmp_path, match="-c")
    d.start([sys.executable, "-c", "print('first run', flush=True)"])
    hub._wait_gone(d.pid() or 0, 10)
    d.start([sys.executable, "-c", "import sys; print('bind: address in use'); sys.exit(3)"])
    with pytest.raises(LabError) as err:
        hub.wait_http("http://127.0.0.1:9/", d, timeout=20)
    message = str(err.value)
    assert "failing exited during start (exit status 3;" in message
    assert "bind: address in use" in message
    assert "first run" not in message
    assert d.logfile.is_file()  # kept
