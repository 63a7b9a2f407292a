"""``files/scripts/llmfleet-swarm.py`` with several members on 127.0.0.1.

Each member is the script as it runs on a host (a subprocess with its own
cache, marker and peer-server port), pulling a small git repo from
``llmfleet.lab.statichub``, which records what it sends; so "the Hub sends
one copy", the huggingface_hub cache layout, a corrupt piece from a peer, a
member that never comes up and a re-run are checked on real files and real
HTTP, without root or the lab.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from llmfleet.lab import hub as labhub
from llmfleet.lab.statichub import StaticHub
from llmfleet.swarmplan import SwarmMember, describe, swarm_plan

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "files" / "scripts" / "llmfleet-swarm.py"
FETCH = ROOT / "files" / "scripts" / "llmfleet-fetch.py"
REPO = "llmfleet-test/swarm"
SIZES = {f"model-0000{i + 1}-of-00004.safetensors": 2_500_000 + i for i in range(4)}
PIECE_MB = 1


def _write(work: Path) -> None:
    (work / "config.json").write_text('{"model_type": "test"}\n')
    for name, size in SIZES.items():
        (work / name).write_bytes(os.urandom(size))


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> dict:
    mirrors = tmp_path_factory.mktemp("mirrors")
    refs = labhub.build_repo_from_files(mirrors, REPO, _write, "swarm test weights")
    return {"work": labhub.repo_path(mirrors, REPO), "commit": refs["main"]}


@pytest.fixture
def hub(repo: dict) -> Iterator[StaticHub]:
    with StaticHub(repo["work"], REPO, repo["commit"]) as server:
        yield server


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(
    hub: StaticHub, tmp: Path, members: dict[str, bool], run: list[str], **plan_extra
) -> dict[str, subprocess.Popen]:
    """Start the members in ``run`` (``members``: name -> needs the snapshot)."""
    ports = {m: _port() for m in members}
    known = [SwarmMember(m, "127.0.0.1", needs, ports[m]) for m, needs in members.items()]
    env = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
    env.update(HF_ENDPOINT=hub.url, HF_HOME=str(tmp / "home"), HF_HUB_DISABLE_TELEMETRY="1")
    procs = {}
    for m in run:
        plan = {**swarm_plan(known, m, PIECE_MB), "linger_s": 30, **plan_extra}
        (tmp / m).mkdir(parents=True, exist_ok=True)
        (tmp / m / "plan.json").write_text(json.dumps(plan))
        procs[m] = subprocess.Popen(
            [sys.executable, str(SCRIPT), "--plan", str(tmp / m / "plan.json")]
            + ["--repo", REPO, "--revision", hub.commit, "--cache-dir", str(tmp / m / "hf")]
            + ["--marker", str(tmp / m / "marker.json"), "--workers", "4"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
    return procs


def finish(procs: dict[str, subprocess.Popen]) -> dict[str, tuple[int, str, str]]:
    out = {}
    for m, p in procs.items():
        stdout, stderr = p.communicate(timeout=120)
        out[m] = (p.returncode, stdout, stderr)
    return out


def snapshot(tmp: Path, m: str, commit: str) -> Path:
    return tmp / m / "hf" / f"models--{REPO.replace('/', '--')}" / "snapshots" / commit


def contents(snap: Path) -> dict[str, str]:
    return {
        str(p.relative_to(snap)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(snap.rglob("*"))
        if p.is_symlink()
    }


def source(repo: dict) -> dict[str, str]:
    return {
        name: hashlib.sha256((repo["work"] / name).read_bytes()).hexdigest()
        for name in [*SIZES, "config.json"]
    }


def resolve_gets(hub: StaticHub) -> list[tuple[str, str]]:
    gets = [(p, r) for m, p, r in hub.requests if m == "GET" and "/resolve/" in p]
    return [(p.rsplit("/", 1)[-1], r) for p, r in gets]


def test_three_members_get_the_snapshot_and_the_hub_sends_each_file_once(
    hub: StaticHub, repo: dict, tmp_path: Path
) -> None:
    members = dict.fromkeys(("a", "b", "c"), True)
    done = finish(start(hub, tmp_path, members, list(members)))
    for m, (rc, out, err) in done.items():
        assert rc == 0, f"{m}: {err}"
        assert contents(snapshot(tmp_path, m, hub.commit)) == source(repo), m
        marker = json.loads((tmp_path / m / "marker.json").read_text())
        assert marker["transfer"] == "swarm" and marker["verified"] is True
        assert json.loads(out.splitlines()[-1])["bytes"] == marker["bytes"]
    assert sorted(n for n, _r in resolve_gets(hub)) == sorted([*SIZES, "config.json"])
    first = json.loads((tmp_path / "a" / "marker.json").read_text())["first_source"]
    assert set(first.values()) == {"a", "b", "c"}  # each member was a first source
    peers = [json.loads((tmp_path / m / "marker.json").read_text())["swarm"] for m in members]
    assert all(s["peer_bytes"] for s in peers)  # every member got bytes from peers
    assert sum(s["upstream_bytes"] for s in peers) == sum(SIZES.values()) + len(
        '{"model_type": "test"}\n'
    )
    # the same cache layout as huggingface_hub's: one plain pull beside it
    env = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
    env.update(HF_ENDPOINT=hub.url, HF_HOME=str(tmp_path / "home"))
    subprocess.run(
        [sys.executable, str(FETCH), "pull", "--repo", REPO, "--revision", hub.commit]
        + ["--cache-dir", str(tmp_path / "plain" / "hf"), "--marker", str(tmp_path / "p.json")]
        + ["--transfer", "huggingface_hub"],
        env=env,
        check=True,
        capture_output=True,
    )
    plain = snapshot(tmp_path, "plain", hub.commit)
    mine = snapshot(tmp_path, "a", hub.commit)
    assert {str(p.relative_to(plain)): os.readlink(p) for p in plain.rglob("*")} == {
        str(p.relative_to(mine)): os.readlink(p) for p in mine.rglob("*")
    }


def test_a_corrupt_piece_from_a_peer_is_detected_and_fetched_again(
    hub: StaticHub, repo: dict, tmp_path: Path
) -> None:
    assert finish(start(hub, tmp_path, {"a": True}, ["a"]))["a"][0] == 0
    shard = next(iter(SIZES))
    blob = (snapshot(tmp_path, "a", hub.commit) / shard).resolve()
    with open(blob, "r+b") as fh:  # same size: only a checksum sees it
        fh.seek((1 << 20) + 10)  # in piece 1
        fh.write(b"XXXX")
    hub.requests.clear()
    done = finish(start(hub, tmp_path, {"a": False, "b": True}, ["a", "b"]))
    assert done["a"][0] == 0 and done["b"][0] == 0, done
    rc, out, err = done["b"]
    assert f"piece 1 of {shard} from a failed its checksum" in err
    assert contents(snapshot(tmp_path, "b", hub.commit)) == source(repo)
    marker = json.loads((tmp_path / "b" / "marker.json").read_text())
    assert marker["swarm"]["corrupt"] == [{"file": shard, "piece": 1, "peer": "a"}]
    assert marker["refetched"] == [shard]
    # only that piece came from the Hub; the rest from the seed
    assert resolve_gets(hub) == [(shard, f"bytes={1 << 20}-{(2 << 20) - 1}")]


def test_a_member_that_never_answers_does_not_stop_the_others(
    hub: StaticHub, repo: dict, tmp_path: Path
) -> None:
    members = dict.fromkeys(("a", "b", "c"), True)
    # c is a first source in the plan but never starts: a and b take its files over
    done = finish(start(hub, tmp_path, members, ["a", "b"], grace_s=2, dead_after_s=2))
    for m in ("a", "b"):
        rc, out, err = done[m]
        assert rc == 0, err
        assert contents(snapshot(tmp_path, m, hub.commit)) == source(repo)
    took = [json.loads((tmp_path / m / "marker.json").read_text())["swarm"] for m in "ab"]
    assert sorted(took[0]["took_over"] + took[1]["took_over"])  # c's files, once
    assert sorted(n for n, _r in resolve_gets(hub)) == sorted([*SIZES, "config.json"])


def test_a_member_that_has_it_all_seeds_and_a_rerun_moves_no_bytes(
    hub: StaticHub, repo: dict, tmp_path: Path
) -> None:
    assert finish(start(hub, tmp_path, {"a": True}, ["a"]))["a"][0] == 0
    hub.requests.clear()
    done = finish(start(hub, tmp_path, {"a": False, "b": True}, ["a", "b"]))
    assert all(rc == 0 for rc, _o, _e in done.values()), done
    assert resolve_gets(hub) == []  # everything from the seed
    stats = json.loads((tmp_path / "b" / "marker.json").read_text())["swarm"]
    assert stats["upstream_bytes"] == 0 and stats["peer_bytes"]["a"] > 0
    before = {m: (tmp_path / m / "marker.json").stat().st_mtime_ns for m in "ab"}
    hub.requests.clear()
    done = finish(start(hub, tmp_path, {"a": False, "b": False}, ["a", "b"]))
    assert all(rc == 0 for rc, _o, _e in done.values()), done
    assert resolve_gets(hub) == [] and not [r for m, p, r in hub.requests if m == "GET"]
    assert before == {m: (tmp_path / m / "marker.json").stat().st_mtime_ns for m in "ab"}


def test_an_interrupted_member_resumes_with_the_pieces_it_had(
    hub: StaticHub, repo: dict, tmp_path: Path
) -> None:
    """What an interrupted swarm leaves: a sparse partial blob and its pieces log."""
    shard = next(iter(SIZES))
    data = (repo["work"] / shard).read_bytes()
    blobs = tmp_path / "a" / "hf" / f"models--{REPO.replace('/', '--')}" / "blobs"
    blobs.mkdir(parents=True)
    part = blobs / (hub.files[shard]["oid"] + ".llmfleet.incomplete")
    piece = PIECE_MB << 20
    part.write_bytes(data[:piece] + b"\0" * (len(data) - piece))
    digest = hashlib.sha256(data[:piece]).hexdigest()
    Path(f"{part}.llmfleet.pieces").write_text(f"piece {piece} size {len(data)}\n0 {digest}\n")
    rc, out, err = finish(start(hub, tmp_path, {"a": True}, ["a"]))["a"]
    assert rc == 0, err
    assert contents(snapshot(tmp_path, "a", hub.commit)) == source(repo)
    assert (shard, f"bytes={piece}-") in resolve_gets(hub)  # not from byte 0 again
    assert json.loads((tmp_path / "a" / "marker.json").read_text())["resumed"] == [shard]
    assert not list(blobs.glob("*.llmfleet.*"))


def test_the_plan_says_who_fetches_from_upstream() -> None:
    fresh = [SwarmMember("lab2", "10.0.0.2", True), SwarmMember("lab1", "10.0.0.1", True)]
    plan = swarm_plan(fresh, "lab2", 16)
    assert plan["origins"] == ["lab1", "lab2"] and plan["bind"] == "10.0.0.2"
    assert plan["members"] == {"lab1": "http://10.0.0.1:8099", "lab2": "http://10.0.0.2:8099"}
    assert plan["piece_bytes"] == 16 << 20
    seeded = [SwarmMember("lab1", "10.0.0.1", False), SwarmMember("lab2", "10.0.0.2", True)]
    plan = swarm_plan(seeded, "lab2", 16)
    assert plan["origins"] == [] and plan["seeds"] == ["lab1"]
    assert "everything from lab1 (no Hub bytes)" in describe(plan)


def test_swarm_command_names_only_the_token_file() -> None:
    from llmfleet.hostpaths import HF_TOKEN
    from llmfleet.serveplan import WeightsPlan
    from roles.weights import swarm_command

    w = WeightsPlan(
        repo=REPO,
        commit="c" * 40,
        hf_home="/srv/hf",
        endpoint="http://mirror:8090",
        source=None,  # type: ignore[arg-type]
        workers=4,
        include=["*.safetensors"],
        verify=False,
        hub_requirement="huggingface_hub",
        swarm=(("lab1", "10.0.0.1", 8099),),
    )
    cmd = swarm_command("/srv/hf/llmfleet/run/swarm-plan.json", w, "/m", "/p", True, True)
    assert cmd == (
        "HF_HUB_DISABLE_TELEMETRY=1 HF_HUB_DOWNLOAD_TIMEOUT=60 HF_ENDPOINT=http://mirror:8090 "
        f"HF_TOKEN_PATH={HF_TOKEN} /opt/llmfleet/tools/hub/bin/python "
        "/opt/llmfleet/bin/llmfleet-swarm.py --plan /srv/hf/llmfleet/run/swarm-plan.json "
        f"--repo {REPO} --revision {'c' * 40} --cache-dir /srv/hf/hub --marker /m "
        "--workers 4 --progress /p --include '*.safetensors' --verify"
    )
    bare = swarm_command("/x", w, "/m", "/p", False, False)
    assert "HF_TOKEN" not in bare and "--verify" not in bare
