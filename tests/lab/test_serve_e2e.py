"""The serve deploy end to end: ``pyinfra inventories/lab.py deploys/serve.py`` against
real lab hosts (systemd-nspawn, SSH with strict host keys), vLLM on CPU under systemd.

Everything is checked on the hosts themselves over SSH: the unit, its user,
the environment file's mode, argv and the token, the endpoint, and that a
second run changes nothing.  Bad input must fail the host it belongs to with
a message naming host and setting, and touch nothing.

Takes over *the* lab (default state dir), like the other lab tests, and
takes it down at the end.  About 5 minutes on 2 cores.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from llmfleet.lab import hosts

from .labkit import Run, fresh_lab

pytestmark = pytest.mark.lab

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "hf_llmfleetTestToken0123456789"  # a fake token; it must never show on a host
UNIT = "llmfleet-serve.service"


def deploy(*args: str, inventory: str = "inventories/lab.py", token: bool = True) -> Run:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
    if token:
        env["HF_TOKEN"] = TOKEN
    env["COLUMNS"] = "200"
    start = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "pyinfra", "-y", inventory, "deploys/serve.py", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=1800,
    )
    return Run(proc, time.monotonic() - start)


def ssh(host: dict[str, Any], command: str) -> str:
    proc = subprocess.run(hosts.ssh_argv(host, command), capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, f"{host['name']}: `{command}`: {proc.stderr}"
    return proc.stdout.strip()


def unit_prop(host: dict[str, Any], prop: str) -> str:
    return ssh(host, f"systemctl show -p {prop} --value {UNIT}")


@pytest.fixture(scope="module")
def lab_state() -> Iterator[dict[str, Any]]:
    with fresh_lab(2) as state:
        yield state


@pytest.fixture(scope="module")
def first(lab_state: dict[str, Any]) -> Run:
    run = deploy()
    print(f"first serve deploy on {len(lab_state['hosts'])} lab hosts: {run.seconds:.0f}s")
    assert run.rc == 0, run
    return run


@pytest.fixture(scope="module")
def lab1(lab_state: dict[str, Any]) -> dict[str, Any]:
    return lab_state["hosts"][0]


@pytest.fixture(scope="module")
def lab2(lab_state: dict[str, Any]) -> dict[str, Any]:
    return lab_state["hosts"][1]


def test_first_run_serves_on_every_host(first: Run, lab_state: dict[str, Any]) -> None:
    assert first.changed > 0
    for host in lab_state["hosts"]:
        assert re.search(rf"│ {host['name']}\s+│ lab-cpu-vllm-tiny .*│ healthy", first.out), first


def test_unit_is_active_enabled_and_runs_as_the_service_user(
    first: Run, lab_state: dict[str, Any]
) -> None:
    for host in lab_state["hosts"]:
        assert ssh(host, f"systemctl is-active {UNIT}") == "active"
        assert ssh(host, f"systemctl is-enabled {UNIT}") == "enabled"
        assert unit_prop(host, "User") == "llmfleet"
        assert unit_prop(host, "Restart") == "always"
        pid = unit_prop(host, "MainPID")
        assert ssh(host, f"ps -o user= -p {pid}") == "llmfleet"
        # the service user cannot log in
        assert ssh(host, "getent passwd llmfleet").endswith(":/usr/sbin/nologin")
        # logs go to journald
        assert "Application startup complete" in ssh(host, f"journalctl -u {UNIT} -o cat")


def test_env_file_is_0600_and_the_token_is_nowhere_in_sight(
    first: Run, lab_state: dict[str, Any]
) -> None:
    assert TOKEN not in first.out
    # put for the pull (0600, root), then removed once the pull was verified
    assert "Hub token (0600, removed after the pull)" in first.out
    assert "No Hub token left on the host" in first.out
    for host in lab_state["hosts"]:
        assert ssh(host, "stat -c '%a %U' /etc/llmfleet/serve.env") == "600 root"
        env = ssh(host, "cat /etc/llmfleet/serve.env")
        assert "VLLM_CPU_KVCACHE_SPACE=1" in env
        # the token reached the host only as a root-only file for the pull, and is
        # gone once the pull is verified (the engine runs offline)
        assert ssh(host, "test -e /etc/llmfleet/hf-token && echo left || echo gone") == "gone"
        for where in (
            "ps -eo args",
            f"systemctl show {UNIT}",
            f"cat /etc/systemd/system/{UNIT} /etc/llmfleet/serve.env",
            "journalctl --no-pager -o cat",
        ):
            assert TOKEN not in ssh(host, where), f"{host['name']}: token shows in `{where}`"


def test_argv_is_the_recipe_with_the_pinned_snapshot(first: Run, lab1: dict[str, Any]) -> None:
    args = ssh(lab1, f"ps -o args= -p {unit_prop(lab1, 'MainPID')}")
    commit = json.loads(ssh(lab1, "cat /var/lib/llmfleet/hf/llmfleet/*.complete"))["revision"]
    assert re.fullmatch(r"[0-9a-f]{40}", commit)
    assert (
        f"--model /var/lib/llmfleet/hf/hub/models--llmfleet-lab--tiny-qwen2/snapshots/{commit}"
        in args
    )
    for flag in (
        "--served-model-name tiny",
        "--port 8000",
        "--max-model-len 512",
        "--max-num-seqs 4",
        "--enforce-eager",
        "--dtype bfloat16",
    ):
        assert flag in args


def chat(host: dict[str, Any], max_tokens: int = 4, timeout: float = 60) -> dict[str, Any]:
    """One chat completion from the host's server, as a client would ask."""
    body = json.dumps(
        {"model": "tiny", "max_tokens": max_tokens, "messages": [{"role": "user", "content": "Hi"}]}
    ).encode()
    req = urllib.request.Request(
        f"http://{host['address']}:8000/v1/chat/completions",
        data=body,
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        return json.loads(resp.read())


def test_endpoint_answers_a_chat_completion(first: Run, lab_state: dict[str, Any]) -> None:
    for host in lab_state["hosts"]:
        reply = chat(host)
        assert reply["model"] == "tiny"
        assert reply["usage"]["completion_tokens"] == 4


def test_second_run_changes_nothing_and_does_not_restart(
    first: Run, lab_state: dict[str, Any]
) -> None:
    pids = [unit_prop(h, "MainPID") for h in lab_state["hosts"]]
    again = deploy()
    assert again.rc == 0, again
    assert again.changed == 0, again
    assert "already serving (no change, not restarted)" in again.out
    assert [unit_prop(h, "MainPID") for h in lab_state["hosts"]] == pids


def test_changed_flag_restarts_that_host_once(
    first: Run, lab1: dict[str, Any], lab2: dict[str, Any]
) -> None:
    before = {h["name"]: unit_prop(h, "MainPID") for h in (lab1, lab2)}
    changed = deploy("--limit", "lab1", "--data", "flag.--max-num-seqs=2")
    assert changed.rc == 0, changed
    assert re.search(
        r"Wait until serving \(health, models, one completion\)\s+1\s+1\s", changed.out
    ), changed
    assert "--max-num-seqs 2" in ssh(lab1, f"ps -o args= -p {unit_prop(lab1, 'MainPID')}")
    assert unit_prop(lab1, "MainPID") != before["lab1"]
    assert unit_prop(lab1, "NRestarts") == "0"  # restarted by us, not crashing
    assert unit_prop(lab2, "MainPID") == before["lab2"]
    same = deploy("--limit", "lab1", "--data", "flag.--max-num-seqs=2")
    assert same.changed == 0, same


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (
            "recipe=lab-cpu-vlm-tiny",
            "lab2: recipe: unknown recipe 'lab-cpu-vlm-tiny': did you mean lab-cpu-vllm-tiny",
        ),
        (
            "revision=does-not-exist",
            "lab2: revision 'does-not-exist' of llmfleet-lab/tiny-qwen2 does not exist on "
            "http://10.213.0.1:8090",
        ),
        (
            "model_repo=llmfleet-lab/no-such-model",
            "lab2: model repo llmfleet-lab/no-such-model not found on http://10.213.0.1:8090",
        ),
        ("flag.max-num-seqs=2", "lab2: flag.max-num-seqs: is not a flag"),
    ],
)
def test_bad_input_fails_clearly_and_touches_nothing(
    first: Run, lab2: dict[str, Any], data: str, message: str
) -> None:
    unit_before = ssh(lab2, f"md5sum /etc/systemd/system/{UNIT}")
    pid = unit_prop(lab2, "MainPID")
    run = deploy("--limit", "lab2", "--data", data)
    assert run.rc != 0
    assert message in run.out, run
    assert "Error: executed 0 commands" in run.out
    assert ssh(lab2, f"md5sum /etc/systemd/system/{UNIT}") == unit_before
    assert unit_prop(lab2, "MainPID") == pid


def test_port_taken_by_another_process_fails_that_host(first: Run, lab2: dict[str, Any]) -> None:
    ssh(
        lab2,
        "systemd-run --unit port-squatter python3 -m http.server 9000 "
        "&& for i in $(seq 50); do ss -Htln 'sport = :9000' | grep -q . && break; "
        "sleep 0.1; done",
    )
    try:
        run = deploy("--limit", "lab2", "--data", "port=9000")
    finally:
        ssh(lab2, "systemctl stop port-squatter")
    assert run.rc != 0
    assert re.search(r"lab2: port: 9000 is already taken by python3 \(pid \d+\)", run.out), run
    assert "--port 8000" in ssh(lab2, f"cat /etc/systemd/system/{UNIT}")


def test_unreachable_host_is_named_and_the_others_finish(
    first: Run, tmp_path: Path, lab_state: dict[str, Any]
) -> None:
    inventory = tmp_path / "with_ghost.py"
    inventory.write_text(
        textwrap.dedent("""\
        from llmfleet.lab.inventory import lab_hosts

        _hosts = lab_hosts()
        lab = _hosts + [("ghost", {**_hosts[0][1], "ssh_hostname": "10.213.0.99",
                                   "ssh_connect_timeout": 3})]
    """)
    )
    run = deploy(inventory=str(inventory))
    assert run.rc != 0
    assert "[ghost] Could not connect" in run.out
    assert re.search(r"│ ghost\s+│.*│ unreachable", run.out), run
    for host in lab_state["hosts"]:
        assert re.search(rf"│ {host['name']}\s+│.*│ healthy", run.out), run


# --- crash recovery and isolation (each lab host in its own cgroup subtree) --------------
#
# These run last: the kills restart lab1's server, and the last one stops lab2's.

UNIT_PROCS = (
    f"cg=$(systemctl show -p ControlGroup --value {UNIT}); "
    "f=/sys/fs/cgroup/unified$cg/cgroup.procs; [ -e $f ] || f=/sys/fs/cgroup$cg/cgroup.procs; "
    "cat $f"
)
# pid and start time (clock ticks since boot, field 22 of /proc/PID/stat) of every
# process of the unit, then every engine process anywhere on the host
SNAPSHOT = (
    f"for p in $({UNIT_PROCS}); do echo unit $p $(cut -d' ' -f22 /proc/$p/stat 2>/dev/null); done; "
    "for p in $(pgrep -f '[V]LLM::|[v]llm[.]entrypoints'); do "
    "echo engine $p $(cut -d' ' -f22 /proc/$p/stat 2>/dev/null); done"
)


def snapshot(host: dict[str, Any]) -> dict[str, set[tuple[int, str]]]:
    """{"unit": {(pid, start)}, "engine": {(pid, start)}} on the host now."""
    out: dict[str, set[tuple[int, str]]] = {"unit": set(), "engine": set()}
    for line in ssh(host, SNAPSHOT).splitlines():
        kind, pid, *start = line.split()
        if start:
            out[kind].add((int(pid), start[0]))
    return out


def chat_ok(host: dict[str, Any]) -> bool:
    try:
        return bool(chat(host, max_tokens=2, timeout=10)["choices"])
    except (OSError, ValueError, KeyError):
        return False


def crash_and_recover(host: dict[str, Any], kill: str, what: str) -> float:
    """Run ``kill`` on the host, wait for the unit's next main process, check that no
    process of the old instance is left, then wait until it serves a completion.
    Returns (and prints) the seconds from the kill to serving again."""
    old = snapshot(host)
    old_main = unit_prop(host, "MainPID")
    assert old_main != "0" and old["unit"], "the server must run before the crash"
    # In one shell on the host: kill, then poll until systemd started the new main
    # process, and list at that moment which old processes are still alive.
    olds = " ".join(f"{p}:{s}" for p, s in old["unit"] | old["engine"])
    script = (
        f"{kill}; t0=$(date +%s.%N); i=0; "
        f"while m=$(systemctl show -p MainPID --value {UNIT}); "
        f'[ "$m" = 0 ] || [ "$m" = {old_main} ]; do i=$((i+1)); '
        '[ $i -gt 600 ] && echo "no new main process after 30 s" && exit 0; sleep 0.05; done; '
        'echo new_main=$m after=$(awk "BEGIN{print $(date +%s.%N) - $t0}")s; '
        f"for ps in {olds}; do p=${{ps%%:*}}; s=${{ps#*:}}; "
        '[ "$(cut -d" " -f22 /proc/$p/stat 2>/dev/null)" = "$s" ] '
        "&& echo left $p $(cat /proc/$p/comm); done; true"
    )
    started = time.monotonic()
    out = ssh(host, script)
    assert "new_main=" in out, out
    left = [line for line in out.splitlines() if line.startswith("left ")]
    assert not left, f"{host['name']}: old processes alive when the new one started:\n{out}"
    deadline = started + 300
    while not chat_ok(host):
        assert time.monotonic() < deadline, ssh(host, f"journalctl -u {UNIT} -n 40 --no-pager")
        time.sleep(0.5)
    seconds = time.monotonic() - started
    new = snapshot(host)
    assert not (old["unit"] | old["engine"]) & (new["unit"] | new["engine"])
    # every engine process on the host belongs to the unit: no orphan under PID 1
    assert new["engine"] <= new["unit"], (new, ssh(host, "ps -eo pid,ppid,comm"))
    print(f"\n{host['name']}: {what}: {out.splitlines()[0]}; crash to serving {seconds:.1f} s")
    return seconds


def test_systemctl_status_inside_a_host_lists_its_own_processes(
    first: Run, lab_state: dict[str, Any]
) -> None:
    from llmfleet.lab import cgroups, lab

    assert [r["cgroup"] for r in lab.status()] == ["isolated", "isolated"]
    for host in lab_state["hosts"]:
        proc = subprocess.run(
            hosts.ssh_argv(host, f"systemctl status {UNIT} --no-pager -n 0; systemctl status"),
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert "Failed to dump process list" not in proc.stdout + proc.stderr, proc
        assert f"─{unit_prop(host, 'MainPID')} " in proc.stdout, proc.stdout
        # from the control machine: the unit's cgroup holds this host's processes only
        leader = os.readlink(f"/proc/{hosts.container_leader(host['pid'])}/ns/pid")
        for key, path in host["cgroups"].items():
            unit_cg = cgroups.fs_path(key, path)
            if key not in ("name=systemd", cgroups.UNIFIED) or unit_cg is None:
                continue
            procs = [
                int(p)
                for f in unit_cg.rglob(f"system.slice/{UNIT}/cgroup.procs")
                for p in f.read_text().split()
            ]
            assert procs, f"{host['name']}: no {UNIT} under {unit_cg}"
            for pid in procs:
                assert os.readlink(f"/proc/{pid}/ns/pid") == leader, (key, pid)


def test_kill_9_of_the_main_pid_restarts_with_nothing_of_the_old_instance_left(
    first: Run, lab1: dict[str, Any]
) -> None:
    restarts = int(unit_prop(lab1, "NRestarts"))
    crash_and_recover(lab1, f"kill -9 $(systemctl show -p MainPID --value {UNIT})", "kill -9 main")
    assert int(unit_prop(lab1, "NRestarts")) == restarts + 1


def test_killing_the_engine_core_restarts_the_unit_with_no_orphan(
    first: Run, lab1: dict[str, Any]
) -> None:
    # vLLM's API server exits 0 when its engine core dies: Restart=always brings it back
    restarts = int(unit_prop(lab1, "NRestarts"))
    crash_and_recover(lab1, "pkill -9 -x VLLM::EngineCor", "kill -9 engine core")
    assert int(unit_prop(lab1, "NRestarts")) == restarts + 1


def test_stopping_the_server_on_lab2_leaves_lab1_untouched(
    first: Run, lab1: dict[str, Any], lab2: dict[str, Any]
) -> None:
    before = snapshot(lab1)
    assert before["unit"]
    started = time.monotonic()
    ssh(lab2, f"systemctl stop {UNIT}")
    print(f"\nlab2: systemctl stop took {time.monotonic() - started:.1f} s")
    assert unit_prop(lab2, "ActiveState") == "inactive"
    assert unit_prop(lab2, "Result") == "success"
    assert snapshot(lab2) == {"unit": set(), "engine": set()}
    assert snapshot(lab1) == before
    assert chat_ok(lab1)
