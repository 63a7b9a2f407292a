"""The docker runtime end to end on the lab: hosts that run docker (``lab up --docker``,
docs/lab-docker.md), the site registry on lab1 (``deploys/registry.py``: a pull-through
cache of the lab's "outside" registry, warmed with the fleet's image), and
``pyinfra inventories/lab_docker.py deploys/serve.py`` serving the lab's engine image,
pinned by digest, under systemd on both hosts.

One 2-host lab for the module.  The order matters: the first deploy is measured
(bytes from outside), the moved tag, the rollback and the crash run on lab1, the
endpoint key last on lab2 (it changes that host's release).  About 10 minutes on
2 cores.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from llmfleet.lab import images, lab, services
from llmfleet.lab.inventory import SITE_REGISTRY_PORT

from .labkit import ROOT, Run, fresh_lab, run_pyinfra, ssh_run

pytestmark = pytest.mark.lab

INVENTORY = "inventories/lab_docker.py"
UNIT = "llmfleet-serve.service"
CONTAINER = "llmfleet-serve"
ssh = ssh_run


def pyinfra(deploy: str, *args: str, limit: str | None = None, env=None) -> Run:
    start = time.monotonic()
    proc = run_pyinfra(deploy, *args, inventory=INVENTORY, limit=limit, env=env)
    return Run(proc, time.monotonic() - start)


def llmfleet(*args: str) -> str:
    """The ``llmfleet`` command as an operator types it; its output."""
    proc = subprocess.run(
        [sys.executable, "-m", "llmfleet", *args],
        cwd=ROOT,
        env={**os.environ, "COLUMNS": "250"},
        capture_output=True,
        text=True,
        timeout=900,
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-4000:]
    return out


def chat(host: dict[str, Any], key: str | None = None, timeout: float = 60) -> dict[str, Any]:
    body = json.dumps(
        {"model": "tiny", "max_tokens": 4, "messages": [{"role": "user", "content": "Hi"}]}
    ).encode()
    headers = {"Content-Type": "application/json"}
    if key:
        headers["Authorization"] = f"Bearer {key}"
    req = urllib.request.Request(
        f"http://{host['address']}:8000/v1/chat/completions", data=body, headers=headers
    )
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        return json.loads(resp.read())


def chat_ok(host: dict[str, Any]) -> bool:
    try:
        return bool(chat(host, timeout=10)["choices"])
    except (OSError, ValueError, KeyError):
        return False


def inspect(host: dict[str, Any], fmt: str, what: str = CONTAINER) -> str:
    return ssh(host, f"docker inspect -f '{fmt}' {what}")


def unit_prop(host: dict[str, Any], prop: str) -> str:
    return ssh(host, f"systemctl show -p {prop} --value {UNIT}")


def pinned(state: dict[str, Any], site: str, digest: str | None = None) -> str:
    """The image as every host runs it: through the site registry, by digest."""
    return f"{site}/{images.REPO}@{digest or state['services']['image_digest']}"


# --- the outside registry's access log: what left "the internet" ------------------------

LOG_LINE = re.compile(r'^(\S+) \S+ \S+ \[[^]]+\] "(\w+) (\S+) [^"]*" (\d{3}) (\d+|-)')


def outside_log() -> Path:
    return images.registry_daemon(services.run_dir()).logfile


def log_offset() -> int:
    return outside_log().stat().st_size


def outside_requests(since: int) -> list[tuple[str, str, str, int, int]]:
    """(client, method, path, status, bytes) of each request the outside registry
    answered after byte ``since`` of its log (its access log, one line a request)."""
    with open(outside_log(), "rb") as fh:
        fh.seek(since)
        text = fh.read().decode(errors="replace")
    found = (LOG_LINE.match(line) for line in text.splitlines())
    return [(m[1], m[2], m[3], int(m[4]), 0 if m[5] == "-" else int(m[5])) for m in found if m]


def blob_bytes(requests: list[tuple[str, str, str, int, int]]) -> int:
    return sum(r[4] for r in requests if r[1] == "GET" and "/blobs/" in r[2])


def image_size(state: dict[str, Any], digest: str) -> int:
    """The image's compressed size: its config and layers, as its manifest lists them."""
    req = urllib.request.Request(
        f"http://{state['services']['registry']}/v2/{images.REPO}/manifests/{digest}",
        headers={"Accept": "application/vnd.docker.distribution.manifest.v2+json"},
    )
    with urllib.request.urlopen(req, timeout=30) as resp:
        manifest = json.loads(resp.read())
    return manifest["config"]["size"] + sum(layer["size"] for layer in manifest["layers"])


# --- fixtures ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def lab_state() -> Iterator[dict[str, Any]]:
    started = time.monotonic()
    with fresh_lab(2, docker=True) as state:
        print(f"\nlab up --docker (2 hosts): {time.monotonic() - started:.0f}s")
        yield state
    print(f"\ndocker lab module: {time.monotonic() - started:.0f}s with lab up and down")


@pytest.fixture(scope="module")
def lab1(lab_state: dict[str, Any]) -> dict[str, Any]:
    return lab_state["hosts"][0]


@pytest.fixture(scope="module")
def lab2(lab_state: dict[str, Any]) -> dict[str, Any]:
    return lab_state["hosts"][1]


@pytest.fixture(scope="module")
def site(lab1: dict[str, Any]) -> str:
    """The site registry on lab1, as hosts name it."""
    return f"{lab1['address']}:{SITE_REGISTRY_PORT}"


@pytest.fixture(scope="module")
def first(lab_state: dict[str, Any], site: str) -> dict[str, Any]:
    """The site registry deploy on lab1, then the first docker deploy on both hosts, and
    what the outside registry sent for each."""
    offset = log_offset()
    registry = pyinfra("deploys/registry.py", limit="lab1")
    assert registry.rc == 0, registry
    middle = log_offset()
    serve = pyinfra("deploys/serve.py")
    assert serve.rc == 0, serve
    print(
        f"\nsite registry deploy on lab1: {registry.seconds:.0f}s; "
        f"first docker serve deploy on 2 hosts: {serve.seconds:.0f}s"
    )
    every, serving = outside_requests(offset), outside_requests(middle)
    return {
        "registry": registry,
        "run": serve,
        "warm": every[: len(every) - len(serving)],
        "serve": serving,
        "all": every,
    }


# --- the tests --------------------------------------------------------------------------


def test_a_docker_deploy_serves_a_completion_through_the_site_registry(
    first: dict[str, Any], lab_state: dict[str, Any], site: str
) -> None:
    ref = pinned(lab_state, site)
    for host in lab_state["hosts"]:
        line = rf"│ {host['name']}\s+│ lab-cpu-vllm-tiny-docker .*│ healthy"
        assert re.search(line, first["run"].out), first["run"]
        reply = chat(host)
        assert reply["model"] == "tiny" and reply["usage"]["completion_tokens"] == 4
        # the image came from the site registry (its name says so), by digest
        assert ref in json.loads(inspect(host, "{{json .RepoDigests}}", ref))
    # nothing asked the outside registry but the site registry on lab1
    assert {r[0] for r in first["all"]} == {lab_state["hosts"][0]["address"]}, first["all"]
    # engines in containers, each host still in its own cgroup subtree
    assert [r["cgroup"] for r in lab.status()] == ["isolated", "isolated"]


def test_the_unit_runs_the_image_pinned_by_digest(
    first: dict[str, Any], lab_state: dict[str, Any], site: str
) -> None:
    ref = pinned(lab_state, site)
    for host in lab_state["hosts"]:
        unit = ssh(host, f"cat /etc/systemd/system/{UNIT}")
        exec_start = next(line for line in unit.splitlines() if line.startswith("ExecStart="))
        assert " --pull never " in exec_start and f" {ref} " in exec_start, exec_start
        manifest = json.loads(ssh(host, "cat /var/lib/llmfleet/releases/current/manifest.json"))
        assert manifest["engine"]["image"] == ref
        assert inspect(host, "{{.Config.Image}}") == ref
        # the running container's image is the one that digest names on this host
        assert inspect(host, "{{.Image}}") == inspect(host, "{{.Id}}", ref)
        assert inspect(host, "{{.State.Running}}") == "true"


def test_two_hosts_through_the_site_registry_cost_one_image_copy_from_outside(
    first: dict[str, Any], lab_state: dict[str, Any]
) -> None:
    size = image_size(lab_state, lab_state["services"]["image_digest"])
    warm, serve = blob_bytes(first["warm"]), blob_bytes(first["serve"])
    sent = warm + serve
    print(
        f"\noutside registry sent {sent / 1e6:.1f} MB of blobs for 2 hosts "
        f"(site registry warm-up {warm / 1e6:.1f} MB, serve deploy {serve / 1e6:.1f} MB); "
        f"the image is {size / 1e6:.1f} MB compressed: {sent / size:.3f} copies"
    )
    assert size <= sent < 1.1 * size, first["all"]
    assert serve == 0, first["serve"]


def test_a_rerun_changes_nothing_and_keeps_the_container(
    first: dict[str, Any], lab_state: dict[str, Any]
) -> None:
    fmt = "{{.Id}} {{.State.StartedAt}}"
    before = {h["name"]: inspect(h, fmt) for h in lab_state["hosts"]}
    again = pyinfra("deploys/serve.py")
    assert again.rc == 0, again
    assert again.changed == 0, again
    assert {h["name"]: inspect(h, fmt) for h in lab_state["hosts"]} == before
    registry = pyinfra("deploys/registry.py", limit="lab1")
    assert registry.rc == 0 and registry.changed == 0, registry


def test_a_moved_tag_is_a_new_release_and_rollback_needs_no_pull(
    first: dict[str, Any], lab_state: dict[str, Any], lab1: dict[str, Any], site: str
) -> None:
    old = lab_state["services"]["image_digest"]
    label = f"variant {time.time():.0f}"
    _, new = images.variant(
        services.cache_dir(),
        lab_state["services"]["image_local"],
        lab_state["services"]["registry"],
        label,
    )
    assert new != old
    # the same tag now names new bytes: the dry run shows the unit diff, changes nothing
    dry = llmfleet("rollout", INVENTORY, "--limit", "lab1", "--dry")
    assert re.search(rf"\+ ExecStart=.* {re.escape(pinned(lab_state, site, new))} ", dry), dry
    assert re.search(rf"- ExecStart=.* {re.escape(pinned(lab_state, site, old))} ", dry), dry
    assert inspect(lab1, "{{.Config.Image}}") == pinned(lab_state, site, old)
    moved = pyinfra("deploys/serve.py", limit="lab1")
    assert moved.rc == 0, moved
    assert inspect(lab1, "{{.Config.Image}}") == pinned(lab_state, site, new)
    assert ssh(lab1, f"docker exec {CONTAINER} cat /etc/llmfleet-lab-variant") == label
    assert chat_ok(lab1)
    # back to the old digest: its image is still on the host, nothing is pulled
    since = ssh(lab1, "date +%s")
    offset = log_offset()
    back = pyinfra("deploys/rollback.py", limit="lab1")
    assert back.rc == 0, back
    until = ssh(lab1, "sleep 1; date +%s")
    assert inspect(lab1, "{{.Config.Image}}") == pinned(lab_state, site, old)
    variant = f"docker exec {CONTAINER} test -e /etc/llmfleet-lab-variant && echo yes || echo no"
    assert ssh(lab1, variant) == "no"
    assert chat_ok(lab1)
    events = ssh(
        lab1,
        f"docker events --since {since} --until {until} --filter type=image "
        "--format '{{.Action}} {{.ID}}'",
    )
    assert "pull" not in events, events
    assert outside_requests(offset) == []
    site_log = ssh(lab1, f"journalctl -u docker-registry --since @{since} -o cat --no-pager")
    assert "/v2/" not in site_log, site_log[-3000:]
    assert "Pull " not in back.out
    print(f"\nlab1: moved tag deployed in {moved.seconds:.0f}s, rolled back in {back.seconds:.0f}s")


def test_kill_9_of_the_containers_main_process_recovers(
    first: dict[str, Any], lab1: dict[str, Any]
) -> None:
    old_id = inspect(lab1, "{{.Id}}")
    old_pid = inspect(lab1, "{{.State.Pid}}")
    old_main = unit_prop(lab1, "MainPID")
    restarts = int(unit_prop(lab1, "NRestarts"))
    # every process of the old container, with its start time (PIDs get reused)
    procs = f"/sys/fs/cgroup/system.slice/docker-{old_id}.scope/cgroup.procs"
    olds = ssh(lab1, f"for p in $(cat {procs}); do echo $p:$(cut -d' ' -f22 /proc/$p/stat); done")
    assert old_pid in [x.split(":")[0] for x in olds.split()], olds
    fmt = "'{{.Id}} {{.State.Running}}'"
    script = (
        f"kill -9 {old_pid}; i=0; "
        f"while c=$(docker inspect -f {fmt} {CONTAINER} 2>/dev/null); "
        f'[ -z "$c" ] || [ "${{c%% *}}" = {old_id} ] || [ "${{c#* }}" != true ]; do '
        'i=$((i+1)); [ $i -gt 1200 ] && echo "no new container after 60 s" && exit 0; '
        "sleep 0.05; done; echo new=${c%% *}; "
        f"for ps in {' '.join(olds.split())}; do p=${{ps%%:*}}; s=${{ps#*:}}; "
        '[ "$(cut -d" " -f22 /proc/$p/stat 2>/dev/null)" = "$s" ] && echo left $p; done; true'
    )
    started = time.monotonic()
    out = ssh(lab1, script)
    assert "new=" in out, out
    assert "left " not in out, out
    new_container = time.monotonic() - started
    deadline = started + 300
    while not chat_ok(lab1):
        assert time.monotonic() < deadline, ssh(lab1, f"journalctl -u {UNIT} -n 40 --no-pager")
        time.sleep(0.5)
    seconds = time.monotonic() - started
    new_id = inspect(lab1, "{{.Id}}")
    assert new_id != old_id
    assert ssh(lab1, "docker ps -a --no-trunc --format '{{.ID}}'").split() == [new_id]
    assert unit_prop(lab1, "MainPID") != old_main
    assert int(unit_prop(lab1, "NRestarts")) == restarts + 1
    print(
        f"\nlab1: kill -9 of the container's main process: new container after "
        f"{new_container:.1f} s, crash to serving {seconds:.1f} s"
    )


def test_the_endpoint_key_is_nowhere_in_sight_and_required(
    first: dict[str, Any], lab2: dict[str, Any], tmp_path: Path
) -> None:
    env = {"LLMFLEET_SECRETS_DIR": str(tmp_path)}
    run = pyinfra("deploys/serve.py", "--data", "api_key=true", limit="lab2", env=env)
    assert run.rc == 0, run
    key = (tmp_path / "lab2.api-key").read_text().strip()
    assert key.startswith("llmf-") and key not in run.out
    for where in (
        f"docker inspect {CONTAINER}",
        "ps -eo args",
        "journalctl --no-pager -o cat",
        f"systemctl show {UNIT}",
        f"cat /etc/systemd/system/{UNIT}",
    ):
        assert key not in ssh(lab2, where), f"lab2: the key shows in `{where}`"
    # the engine has it (from the env file read inside the container), and wants it
    with pytest.raises(urllib.error.HTTPError) as refused:
        chat(lab2)
    assert refused.value.code == 401
    assert chat(lab2, key=key)["choices"]
