#!/usr/bin/env python3
"""Benchmark: weights to N lab hosts whose links are capped like NICs, three ways.

    python3 bench/swarm_weights.py [--rate-mbit 80] [--shards 8] [--shard-mb 16]
                                   [--piece-mb 4] [--sizes 1,2,4,8] [--json]

One run does everything, on a fresh lab of max(sizes)+1 hosts (the last one is
the site mirror's cache host):

1. Serves a repo of random shards (``llmfleet.lab.shards``) from a CDN-like
   Hub stand-in on the control machine (``llmfleet.lab.statichub``: sendfile,
   honours Range) and, through ``deploys/mirror.py``, from olah on the mirror
   host (warmed once, untimed, so it serves from its cache).
2. Caps every lab host's link with ``tc`` tbf at the same rate, both ways: the
   control side of its veth (what it downloads) and ``eth0`` in its netns (what
   it uploads).  The Hub stand-in is outside the lab, like a CDN: it is not
   capped; the mirror is a lab host: its one NIC is.
3. Times, for each N, from start until all N hosts hold the checkpoint checked
   against the Hub's checksums (``--verify`` for the plain pulls; the swarm
   always checks):
   * ``direct``: every host pulls from the Hub (``llmfleet-fetch.py pull``);
   * ``mirror``: every host pulls from the site mirror;
   * ``swarm``: ``llmfleet-swarm.py`` with the plan the role writes
     (``llmfleet.swarmplan``), every host a first source, the Hub upstream;
   * ``swarm+mirror``: the same with the mirror upstream (its one capped NIC
     sends each file once; the hosts share the rest).
   Hub bytes are what the control machine sent onto the lab bridge in that
   timing (host-to-host traffic is not counted there; a little SSH is).
4. The raw limit of one capped link: the same files fetched by parallel
   ``curl -o`` on lab1, and the toolkit's single-host pull as a ratio of it;
   the same pair once more with the caps off (what the bridge, veth and disk
   give without a NIC model).

The scripts run on the hosts over SSH as the weights role runs them (the tool
venv and scripts come from a warm-up ``deploys/weights.py`` run with
``weights_swarm``, which also shows the role's swarm on every host).  Needs
root and the lab (take the lab lock: other sessions share it).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

# the lab deploy runner of the Hub-bytes benchmark (this script's own folder is on sys.path)
from fleet_hub_bytes import pyinfra  # noqa: E402

from llmfleet.hostpaths import FETCH_SCRIPT, HUB_VENV, SWARM_SCRIPT  # noqa: E402
from llmfleet.lab import hosts, lab, network, shards  # noqa: E402
from llmfleet.lab import hub as labhub  # noqa: E402
from llmfleet.lab.services import mirrors_root  # noqa: E402
from llmfleet.lab.statichub import StaticHub  # noqa: E402
from llmfleet.swarmplan import SwarmMember, plan_json, swarm_plan  # noqa: E402

BENCH = "/var/lib/llmfleet/bench-swarm"
MB = 1_000_000


def ssh(host: dict, command: str, timeout: float = 900) -> subprocess.CompletedProcess:
    return subprocess.run(
        hosts.ssh_argv(host, command), capture_output=True, text=True, timeout=timeout
    )


def on_all(hs: list[dict], command, timeout: float = 900) -> list[subprocess.CompletedProcess]:
    """``command(host)`` on every host at once; the results in host order."""
    with ThreadPoolExecutor(len(hs)) as pool:
        return list(pool.map(lambda h: ssh(h, command(h), timeout), hs))


def cap(hs: list[dict], rate_mbit: int | None) -> None:
    """Every host's link at ``rate_mbit`` both ways (None: caps off)."""
    for h in hs:
        veth, ns = network.veth_name(h["name"]), network.netns_name(h["name"])
        for where in (["tc"], ["ip", "netns", "exec", ns, "tc"]):
            dev = veth if where == ["tc"] else network.HOST_IFACE
            subprocess.run([*where, "qdisc", "del", "dev", dev, "root"], capture_output=True)
            if rate_mbit:
                subprocess.run(
                    [*where, "qdisc", "add", "dev", dev, "root", "tbf", "rate"]
                    + [f"{rate_mbit}mbit", "burst", "256kb", "latency", "100ms"],
                    check=True,
                )


def timed(hs: list[dict], command, cleanup: str) -> dict:
    """Run ``command(host)`` on every host at once; seconds until the last is done and
    the Hub bytes of that time.  Every host must succeed."""
    on_all(hs, lambda h: cleanup)
    os.sync()
    before = shards.hub_bytes_sent()
    t0 = time.monotonic()
    results = on_all(hs, command)
    seconds = time.monotonic() - t0
    sent = shards.hub_bytes_sent() - before
    for h, r in zip(hs, results, strict=True):
        if r.returncode != 0:
            sys.exit(f"{h['name']}: exit {r.returncode}:\n{r.stdout[-2000:]}\n{r.stderr[-3000:]}")
    return {"seconds": round(seconds, 2), "hub_bytes": sent, "outputs": [r.stdout for r in results]}


def pull_cmd(endpoint: str, repo: str, commit: str, where: str) -> str:
    q = shlex.quote
    return (
        f"rm -rf {where} && HF_ENDPOINT={q(endpoint)} HF_HUB_DISABLE_TELEMETRY=1 "
        f"{HUB_VENV}/bin/python {FETCH_SCRIPT} pull --repo {q(repo)} --revision {commit} "
        f"--cache-dir {where}/hub --marker {where}/marker.json --verify"
    )


def swarm_cmd(hub_url: str, repo: str, commit: str, where: str, plan: dict) -> str:
    q = shlex.quote
    return (
        f"rm -rf {where} && mkdir -p {where} && printf %s {q(plan_json(plan))} > {where}/plan.json"
        f" && HF_ENDPOINT={q(hub_url)} HF_HUB_DISABLE_TELEMETRY=1 {HUB_VENV}/bin/python "
        f"{SWARM_SCRIPT} --plan {where}/plan.json --repo {q(repo)} --revision {commit} "
        f"--cache-dir {where}/hub --marker {where}/marker.json"
    )


def raw_limit(host: dict, base: str, names: list[str]) -> float:
    """Seconds for parallel ``curl -o`` of every file on ``host`` (into a fresh dir)."""
    d = f"{BENCH}/curl"
    gets = " ".join(f"curl -sf -o {d}/{i} {shlex.quote(base + n)} &" for i, n in enumerate(names))
    ssh(host, f"rm -rf {d} && mkdir -p {d}")
    t0 = time.monotonic()
    r = ssh(host, f"{gets} wait; sync -f {d}/0")
    took = time.monotonic() - t0
    if r.returncode != 0:
        sys.exit(f"curl on {host['name']}: {r.stderr}")
    return round(took, 2)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rate-mbit", type=int, default=80, help="every host's link, both ways")
    p.add_argument("--shards", type=int, default=8)
    p.add_argument("--shard-mb", type=int, default=16)
    p.add_argument("--piece-mb", type=int, default=4)
    p.add_argument("--sizes", default="1,2,4,8", help="fleet sizes N")
    p.add_argument("--json", action="store_true")
    a = p.parse_args()
    sizes = [int(x) for x in a.sizes.split(",")]

    def log(msg: str) -> None:
        print(
            f"[{time.strftime('%T')}] {msg}", file=sys.stderr if a.json else sys.stdout, flush=True
        )

    t_setup = time.monotonic()
    lab.down()
    state = lab.up(hosts=max(sizes) + 1)
    fleet, mirror = state["hosts"][:-1], state["hosts"][-1]
    refs = shards.build(a.shards, a.shard_mb)
    commit, repo = refs["main"], shards.REPO
    work = labhub.repo_path(mirrors_root(), repo)
    size = a.shards * (a.shard_mb << 20)
    names = sorted(labhub_files(work, commit))
    log(f"lab of {len(state['hosts'])} hosts up; repo {repo}@{commit[:12]}: {size / MB:.0f} MB")
    pyinfra("deploys/weights.py", "--data", "weights_swarm=true")  # tools, scripts, venv
    pyinfra(
        "deploys/mirror.py",
        "--limit",
        mirror["name"],
        "--data",
        f"mirror_upstream={state['services']['hub_upstream_url']}",
    )
    mirror_url = f"http://{mirror['address']}:8090"
    result: dict = {
        "rate_mbit": a.rate_mbit,
        "bytes": size,
        "shards": a.shards,
        "piece_mb": a.piece_mb,
        "runs": [],
    }
    with StaticHub(work, repo, commit, host=network.GATEWAY) as hub:
        hub.requests = _NoLog()  # a benchmark's worth of requests: not kept
        before = shards.hub_bytes_sent()
        warm = ssh(mirror, pull_cmd(mirror_url, repo, commit, f"{BENCH}/warm"))
        if warm.returncode != 0:
            sys.exit(f"warming the mirror failed: {warm.stderr[-2000:]}")
        result["mirror_fill_hub_bytes"] = shards.hub_bytes_sent() - before
        log(f"setup {time.monotonic() - t_setup:.0f} s; mirror filled from the Hub")
        base = f"{hub.url}/{repo}/resolve/{commit}/"
        cap(state["hosts"], None)
        result["uncapped"] = {
            "curl_s": raw_limit(fleet[0], base, names),
            "toolkit_s": timed(
                fleet[:1], lambda h: pull_cmd(hub.url, repo, commit, f"{BENCH}/u"), "true"
            )["seconds"],
        }
        cap(state["hosts"], a.rate_mbit)
        result["capped"] = {"curl_s": raw_limit(fleet[0], base, names)}
        for n in sizes:
            hs = fleet[:n]
            members = [SwarmMember(h["name"], h["address"], True) for h in hs]
            plans = {h["name"]: swarm_plan(members, h["name"], a.piece_mb) for h in hs}
            for mode in ("direct", "mirror", "swarm", "swarm+mirror"):
                where = f"{BENCH}/{mode.replace('+', '-')}"
                if mode.startswith("swarm"):
                    up = hub.url if mode == "swarm" else mirror_url
                    cmd = lambda h, w=where, ps=plans, u=up: swarm_cmd(  # noqa: E731
                        u, repo, commit, w, ps[h["name"]]
                    )
                else:
                    url = hub.url if mode == "direct" else mirror_url
                    cmd = lambda h, w=where, u=url: pull_cmd(u, repo, commit, w)  # noqa: E731
                run = timed(hs, cmd, f"rm -rf {BENCH}/*")
                outs = [json.loads(o.strip().splitlines()[-1]) for o in run.pop("outputs")]
                entry = {"n": n, "mode": mode, **run, "copies": round(run["hub_bytes"] / size, 2)}
                if mode.startswith("swarm"):
                    entry["done_s"] = max(o["seconds"] for o in outs)  # before lingering
                result["runs"].append(entry)
                log(
                    f"N={n} {mode:<12} {entry['seconds']:6.1f} s  Hub bytes {run['hub_bytes']:>13,}"
                    f" ({entry['copies']:.2f} copies)"
                )
        cap(state["hosts"], None)
    on_all(state["hosts"], lambda h: f"rm -rf {BENCH}")
    lab.down()
    if a.json:
        print(json.dumps(result, indent=2))
    else:
        print(report(result))
    return 0


class _NoLog(list):
    def append(self, item) -> None:
        pass


def labhub_files(work: Path, commit: str) -> list[str]:
    from llmfleet.lab.statichub import git_files

    return list(git_files(work, commit))


def report(r: dict) -> str:
    size, rate = r["bytes"], r["rate_mbit"]
    by = {(x["n"], x["mode"]): x for x in r["runs"]}
    sizes = sorted({x["n"] for x in r["runs"]})
    one = by[(1, "direct")]["seconds"]
    lines = [
        f"{size / MB:.0f} MB ({r['shards']} shards, {r['piece_mb']} MiB swarm pieces), every lab "
        f"host's link capped at {rate} Mbit/s ({rate / 8:.1f} MB/s) both ways",
        "",
        f"{'N':>3} {'direct s':>9} {'mirror s':>9} {'swarm s':>8} {'swarm+mirror s':>15}"
        f"   {'Hub copies d/m/s/s+m':>24}   {'swarm / 1-host':>14}",
    ]
    for n in sizes:
        d, m, s = by[(n, "direct")], by[(n, "mirror")], by[(n, "swarm")]
        sm = by[(n, "swarm+mirror")]
        lines.append(
            f"{n:>3} {d['seconds']:>9.1f} {m['seconds']:>9.1f} {s['seconds']:>8.1f} "
            f"{sm['seconds']:>15.1f}   {d['copies']:>5.2f} {m['copies']:>5.2f} "
            f"{s['copies']:>5.2f} {sm['copies']:>5.2f}   {s['seconds'] / one:>13.2f}x"
        )
    lines += [
        "(seconds from start until all N hosts hold the checkpoint checked against the Hub's "
        "checksums;\n 1-host = direct with N=1; the mirror was filled before, with "
        f"{r['mirror_fill_hub_bytes'] / size:.2f} copies from the Hub)",
        "",
    ]
    c, u = r["capped"], r["uncapped"]
    lines.append(
        f"raw link limit (parallel curl -o on lab1, capped): {c['curl_s']:.1f} s = "
        f"{size / MB / c['curl_s']:.1f} MB/s; toolkit single-host pull {one:.1f} s = "
        f"{size / MB / one:.1f} MB/s: ratio {c['curl_s'] / one:.2f}"
    )
    lines.append(
        f"uncapped (bridge + veth + disk): curl {u['curl_s']:.1f} s, "
        f"toolkit {u['toolkit_s']:.1f} s:"
        f" ratio {u['curl_s'] / u['toolkit_s']:.2f}"
    )
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
