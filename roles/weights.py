"""Weights role: one pinned snapshot per (repo, commit) in the host's shared cache.

The revision is resolved to a commit hash once, on the control node (see
``llmfleet.hubapi``), so every host pulls exactly the same bytes even while
``main`` moves.  The pull itself runs on the host from a small tool venv with
huggingface_hub (the engine's venv may not exist: docker runtime, or weights
pulled before the engine), resumes where an interrupted pull stopped, and
verifies against the Hub's sizes and checksums.  Whether anything needs doing
is a fact read from the host (the manifest in the completion marker checked
against the files on disk), so a whole snapshot means no operation at all.

The token comes only from the control node (HF_TOKEN or HF_TOKEN_FILE) and
reaches the host as a 0600 file, never in argv, logs or the unit; the file
is removed again once the pull is verified, since the engine runs offline
(``HF_HUB_OFFLINE=1``) and nothing else on the host needs it.
"""

from __future__ import annotations

import json
import shlex
import time
from pathlib import Path

from pyinfra import host
from pyinfra.api import FactBase, deploy
from pyinfra.api.operation import OperationMeta
from pyinfra.operations import files, python, server

from llmfleet.hostpaths import FETCH_SCRIPT as HOST_SCRIPT
from llmfleet.hostpaths import HF_TOKEN as TOKEN_PATH
from llmfleet.hostpaths import HUB_VENV, SWARM_SCRIPT, TOOLS_DIR, weights_marker, weights_run_dir
from llmfleet.hubapi import control_token
from llmfleet.outcome import human_bytes
from llmfleet.serveplan import WeightsPlan
from llmfleet.swarmplan import SwarmMember, describe, plan_json, swarm_plan

from .accounts import secret_file
from .pyenvs import ensure_venv
from .run import current_run, record

SCRIPT = Path(__file__).resolve().parent.parent / "files" / "scripts" / "llmfleet-fetch.py"
SWARM = SCRIPT.with_name("llmfleet-swarm.py")


class SnapshotState(FactBase):
    """``{"ok": bool, "bad": {file: why}}`` from the host's marker and files.

    Runs the fetch script's stdlib-only ``check`` through python3's stdin, so
    it works before anything of ours is installed on the host.
    """

    def command(self, marker: str, hashes: bool = False) -> str:
        args = f"check --marker {shlex.quote(marker)}" + (" --hashes" if hashes else "")
        return f"python3 - {args} <<'LLMFLEET_EOF'\n{SCRIPT.read_text()}\nLLMFLEET_EOF"

    def process(self, output: list[str]) -> dict:
        try:
            return json.loads(output[-1])
        except (ValueError, IndexError):
            return {"ok": False, "why": "\n".join(output)}

    def default(self) -> dict:
        return {"ok": False, "why": "the check printed nothing"}


def pull_command(
    repo: str,
    commit: str,
    hf_home: str,
    marker: str,
    *,
    endpoint: str | None,
    token: bool,
    workers: int,
    include: list[str],
    verify: bool,
    progress: str,
) -> str:
    env = {
        "HF_HUB_DISABLE_TELEMETRY": "1",
        "HF_HUB_DISABLE_PROGRESS_BARS": "1",
        "HF_XET_HIGH_PERFORMANCE": "1",
        # a busy mirror can stall longer than huggingface_hub's 10 s default read timeout
        "HF_HUB_DOWNLOAD_TIMEOUT": "60",
        "HF_HUB_ETAG_TIMEOUT": "30",
    }
    if endpoint:
        env["HF_ENDPOINT"] = endpoint
    if token:
        env["HF_TOKEN_PATH"] = TOKEN_PATH
    q = shlex.quote
    args = [
        f"{HUB_VENV}/bin/python",
        HOST_SCRIPT,
        "pull",
        *_target_args(repo, commit, hf_home, marker, workers, progress),
    ]
    args += [a for pattern in include for a in ("--include", q(pattern))]
    if verify:
        args.append("--verify")
    return " ".join([*(f"{k}={q(v)}" for k, v in env.items()), *args])


def _run_pull(
    command: str, run_dir: str, label: str, poll: float = 2.0, record_pull: bool = True
) -> None:
    """Start the pull detached on the host, then print its progress until it ends.

    Detached so a dropped SSH connection does not kill a multi-hour pull; the
    next run resumes or finds it done.  Raises with the script's own error.
    """
    q = shlex.quote
    log, rc, prog = f"{run_dir}/pull.log", f"{run_dir}/pull.rc", f"{run_dir}/progress.json"
    pid = f"{run_dir}/pull.pid"
    start = (
        f"mkdir -p {q(run_dir)} && rm -f {q(rc)} {q(prog)} && "
        f"(nohup sh -c {q(f'{command} > {log} 2>&1; echo $? > {rc}')} "
        f">/dev/null 2>&1 & echo $! > {q(pid)})"
    )
    ok, out = host.run_shell_command(start)
    if not ok:
        raise RuntimeError(f"{host.name}: could not start the pull: {out.stderr}")
    began, last = time.monotonic(), ""
    while True:
        time.sleep(poll)
        # rc is written by the wrapper; if the wrapper itself is gone (killed,
        # OOM, reboot) without writing it, say so instead of waiting forever
        _, out = host.run_shell_command(
            f"if [ -s {q(rc)} ]; then echo rc=$(cat {q(rc)}); "
            f"elif kill -0 $(cat {q(pid)}) 2>/dev/null; then echo rc=; "
            f"else sleep 1; echo rc=$(cat {q(rc)} 2>/dev/null || echo lost); fi; "
            f"cat {q(prog)} 2>/dev/null"
        )
        lines = out.stdout.strip().splitlines()
        code = lines[0][3:].strip() or None if lines and lines[0].startswith("rc=") else None
        try:
            p = json.loads(lines[1]) if len(lines) > 1 else None
        except ValueError:
            p = None
        if isinstance(p, dict) and {"done", "total", "rate"} <= set(p):
            eta = f"{p['eta']:.0f}s" if p.get("eta") is not None else "?"
            line = (
                f"    [{host.name}] {label}: {human_bytes(p['done'])} of {human_bytes(p['total'])}"
                f" at {human_bytes(p['rate'])}/s, ETA {eta}"
            )
            if line != last:
                print(line, flush=True)
                last = line
        if code is not None:
            break
    _, out = host.run_shell_command(f"tail -n 20 {q(log)}")
    tail = out.stdout.strip()
    if code == "lost":
        raise RuntimeError(
            f"{host.name}: weights: pull of {label} failed: the pull process "
            f"vanished without an exit code (killed?):\n{tail}"
        )
    if code != "0":
        raise RuntimeError(f"{host.name}: weights: pull of {label} failed (exit {code}):\n{tail}")
    if not record_pull:  # a swarm member that only served: nothing was pulled here
        return
    summary = tail.splitlines()[-1] if tail else "{}"
    wall = round(time.monotonic() - began, 1)
    rec = record(host.name)
    rec.timings["pull_s"] = wall
    try:
        rec.pull = {**json.loads(summary), "wall": wall}
    except ValueError:
        rec.pull = {"wall": wall}


def _target_args(
    repo: str, commit: str, hf_home: str, marker: str, workers: int, progress: str
) -> list[str]:
    """What both the Hub pull and the peer copy are told: which snapshot, where, how."""
    q = shlex.quote
    return [
        "--repo",
        q(repo),
        "--revision",
        commit,
        "--cache-dir",
        q(f"{hf_home}/hub"),
        "--marker",
        q(marker),
        "--workers",
        str(int(workers)),
        "--progress",
        q(progress),
    ]


def peer_command(
    peer_url: str,
    repo: str,
    commit: str,
    hf_home: str,
    marker: str,
    workers: int,
    progress: str,
    verify: bool = False,
) -> str:
    return " ".join(
        [
            "python3",
            HOST_SCRIPT,
            "peer",
            "--peer",
            shlex.quote(peer_url),
            *_target_args(repo, commit, hf_home, marker, workers, progress),
            *(["--verify"] if verify else []),
        ]
    )


def _fan_out(serve: dict | None, copy: dict | None) -> None:
    if serve:
        _serve_peers(**serve)
        return
    assert copy is not None
    # the serving host starts in this same operation: give it a moment
    host.run_shell_command(
        "for i in $(seq 120); do python3 -c "
        f'"import urllib.request as u; u.urlopen({copy["url"]!r}, timeout=2)" '
        "2>/dev/null && exit 0; sleep 0.5; done; exit 0"
    )
    _run_pull(copy["command"], copy["run_dir"], copy["label"])


def _serve_peers(marker: str, bind: str, port: int, run_dir: str) -> None:
    """Serve the finished snapshot to peers (detached, self-stopping after an hour)."""
    q = shlex.quote
    pid = f"{run_dir}/peer-serve.pid"
    ok, out = host.run_shell_command(
        f"mkdir -p {q(run_dir)} && (nohup python3 {HOST_SCRIPT} serve --marker {q(marker)} "
        f"--bind {q(bind)} --port {int(port)} --seconds 3600 > {q(run_dir)}/peer-serve.log "
        f"2>&1 & echo $! > {q(pid)}) && for i in $(seq 50); do "
        f'python3 -c "import socket; socket.create_connection(({bind!r}, {int(port)}), 1)" '
        f"2>/dev/null && exit 0; sleep 0.2; done; cat {q(run_dir)}/peer-serve.log; exit 1"
    )
    if not ok:
        raise RuntimeError(
            f"{host.name}: weights: could not serve peers on {bind}:{port}: "
            f"{out.stdout}{out.stderr}"
        )


def _token_ops(token: str | None, ops: list[OperationMeta]) -> None:
    if token:
        ops.append(secret_file("Hub token (0600, removed after the pull)", token, TOKEN_PATH))


def swarm_command(
    plan_path: str, w: WeightsPlan, marker: str, progress: str, verify: bool, token: bool
) -> str:
    q = shlex.quote
    env = {"HF_HUB_DISABLE_TELEMETRY": "1", "HF_HUB_DOWNLOAD_TIMEOUT": "60"}
    if w.endpoint:
        env["HF_ENDPOINT"] = w.endpoint
    if token:
        env["HF_TOKEN_PATH"] = TOKEN_PATH
    args = [
        f"{HUB_VENV}/bin/python",
        SWARM_SCRIPT,
        "--plan",
        q(plan_path),
        *_target_args(w.repo, w.commit, w.hf_home, marker, w.workers, progress),
    ]
    args += [a for pattern in w.include for a in ("--include", q(pattern))]
    if verify:
        args.append("--verify")
    return " ".join([*(f"{k}={q(v)}" for k, v in env.items()), *args])


def _run_swarm(members: list[tuple[str, str, int]], needs: dict[str, bool], **kw) -> None:
    """At run time, when every member's state is known: the plan for this host, written
    where a person can read it, then the swarm (or, on a member that has it all, the
    serving of it) until every member is done."""
    me = host.name
    known = [SwarmMember(h, a, needs[h], port) for h, a, port in members if h in needs]
    plan = swarm_plan(known, me, kw["piece_mb"])
    path = f"{kw['run_dir']}/swarm-plan.json"
    ok, out = host.run_shell_command(
        f"mkdir -p {shlex.quote(kw['run_dir'])} && cat > {shlex.quote(path)} <<'LLMFLEET_EOF'\n"
        f"{plan_json(plan)}\nLLMFLEET_EOF"
    )
    if not ok:
        raise RuntimeError(f"{me}: weights: could not write the swarm plan: {out.stderr}")
    print(f"    [{me}] weights: {describe(plan)} (plan: {path})", flush=True)
    label = kw["label"] if needs[me] else f"{kw['label']} (serving the swarm)"
    _run_pull(kw["command"], kw["run_dir"], label, record_pull=needs[me])


def _swarm_ops(w: WeightsPlan, state: dict, marker: str, run_dir: str, ops: list) -> None:
    """Every member gets the scripts and the tool venv; the members that need the
    snapshot get the token; one operation for all members runs the swarm, and is
    skipped on every member when none needs anything (a re-run moves no bytes)."""
    run = current_run()
    needs = not state.get("ok")
    run.swarm_needs[host.name] = needs
    if state.get("bad"):
        print(f"    [{host.name}] weights: {w.label} needs repair: {state['bad']}")
    ops.append(files.directory(name="Weights cache", path=f"{w.hf_home}/llmfleet", mode="755"))
    ops.append(files.put(name="Fetch script", src=str(SCRIPT), dest=HOST_SCRIPT, mode="755"))
    ops.append(files.put(name="Swarm script", src=str(SWARM), dest=SWARM_SCRIPT, mode="755"))
    ensure_venv("Hub tools", HUB_VENV, [w.hub_requirement], w.source, ops, parent=TOOLS_DIR)
    token = control_token() if needs else None
    _token_ops(token, ops)
    names = [m[0] for m in w.swarm]
    ops.append(
        python.call(
            name="Swarm weights (every host serves what it holds)",
            function=_run_swarm,
            members=list(w.swarm),
            needs=run.swarm_needs,
            command=swarm_command(
                f"{run_dir}/swarm-plan.json",
                w,
                marker,
                f"{run_dir}/progress.json",
                w.verify or bool(state.get("bad")),
                bool(token),
            ),
            run_dir=run_dir,
            label=w.label,
            piece_mb=w.piece_mb,
            _if=lambda: any(run.swarm_needs.get(n) for n in names),
        )
    )
    if token:
        ops.append(files.file(name="No Hub token left on the host", path=TOKEN_PATH, present=False))


@deploy("Model weights")
def weights(w: WeightsPlan, ops: list[OperationMeta]) -> None:
    """Pull the plan's snapshot from the Hub (or mirror); with ``w.peer``, copy from that
    host of the site instead (fan-out without a mirror); with ``w.serves_peers``, serve
    the copies."""
    marker = weights_marker(w.hf_home, w.repo, w.commit)
    run_dir = weights_run_dir(w.hf_home)
    state = host.get_fact(SnapshotState, marker=marker, hashes=w.verify)
    if w.swarm:
        _swarm_ops(w, state, marker, run_dir, ops)
        return
    run = current_run()
    me = host.name  # for the run-time checks below (the `host` proxy moves on)
    token = None
    if not state.get("ok"):
        if state.get("bad"):
            print(f"    [{host.name}] weights: {w.label} needs repair: {state['bad']}")
        ops.append(files.directory(name="Weights cache", path=f"{w.hf_home}/llmfleet", mode="755"))
        ops.append(files.put(name="Fetch script", src=str(SCRIPT), dest=HOST_SCRIPT, mode="755"))
        if not w.peer:  # from a peer, the copy op comes below, once the peer serves
            ensure_venv("Hub tools", HUB_VENV, [w.hub_requirement], w.source, ops, parent=TOOLS_DIR)
            token = control_token()
            _token_ops(token, ops)
            command = pull_command(
                w.repo,
                w.commit,
                w.hf_home,
                marker,
                endpoint=w.endpoint,
                token=bool(token),
                workers=w.workers,
                include=list(w.include),
                verify=w.verify or bool(state.get("bad")),
                progress=f"{run_dir}/progress.json",
            )
            ops.append(
                python.call(
                    name=f"Pull {w.label}",
                    function=_run_pull,
                    command=command,
                    run_dir=run_dir,
                    label=w.label,
                )
            )
    if token:
        # reached only when the pull above ended verified; the engine runs offline
        ops.append(files.file(name="No Hub token left on the host", path=TOKEN_PATH, present=False))
    # One operation for both sides of a fan-out, so pyinfra runs them together: the
    # serving host starts its server at once, the copying hosts wait for it and copy.
    copying = bool(w.peer and not state.get("ok"))
    if copying:
        run.peer_needed[str(w.peer)] = True
    if w.serves_peers or copying:
        fan = python.call(
            name="Fan out weights (peer serves, others copy)",
            function=_fan_out,
            serve=None
            if copying
            else {
                "marker": marker,
                "bind": str(host.data.get("ssh_hostname") or host.name),
                "port": w.peer_port,
                "run_dir": run_dir,
            },
            copy=None
            if not copying
            else {
                "command": peer_command(
                    f"http://{w.peer_address}:{w.peer_port}",
                    w.repo,
                    w.commit,
                    w.hf_home,
                    marker,
                    w.workers,
                    f"{run_dir}/progress.json",
                    w.verify,
                ),
                "url": f"http://{w.peer_address}:{w.peer_port}/marker.json",
                "run_dir": run_dir,
                "label": f"{w.label} from {w.peer}",
            },
            _if=lambda: copying or run.peer_needed.get(me, False),
        )
        if copying:
            ops.append(fan)
    if w.serves_peers:
        server.shell(
            name="Stop serving peers",
            commands=[
                f"kill $(cat {run_dir}/peer-serve.pid) 2>/dev/null; rm -f {run_dir}/peer-serve.pid"
            ],
            _if=lambda: run.peer_needed.get(me, False),
        )
