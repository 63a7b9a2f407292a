#!/usr/bin/env python3
"""Benchmark: how fast does the toolkit pull model weights, next to the alternatives?

One run does everything:

1. Builds (once; cached under ``/var/cache/llmfleet-bench``, keyed by size and
   shard count) a synthetic model repo: ``config.json``, a safetensors index and
   N shards of random bytes with a valid safetensors header, as plain git blobs
   committed with zlib level 0 (``hub.build_repo_from_files``), so olah serves
   it the way the lab serves its tiny model.
2. Starts the local Hub endpoint on 127.0.0.1 on a free port (``--hub``):
   ``static`` (default), ``llmfleet.lab.statichub``, a read-only Hub stand-in
   that sends bodies with sendfile(2) the way a CDN would; or ``olah``, the
   lab's offline olah, which reads each blob whole on one core and tops out
   near 20 MB/s here, so with it every HTTP client measures olah.
3. Times, each into a fresh directory on the same disk, alternating the order
   every round (``--rounds``, default 2):

   * ``toolkit``: ``files/scripts/llmfleet-fetch.py`` as the role runs it
     (``--transfer auto``: direct splice(2) transfer on a plain-HTTP endpoint);
   * ``toolkit-hfhub``: the same script with ``--transfer huggingface_hub``,
     the path it takes over HTTPS (the Hub itself);
   * ``hf-download``: ``hf download REPO --revision COMMIT --cache-dir DIR``
     with default settings;
   * ``local-limit``: a parallel in-kernel copy (``os.sendfile``, one thread per
     file up to ``--copy-threads``) of the same files from the repo's work tree,
     i.e. what this disk does without HTTP.

   A timing ends when the method has returned *and* an fsync of every file it
   wrote is done (the disk, not the page cache, is the limit; the time to
   return is reported too).  A ``sync`` runs before each run, outside the
   timings, so one run's write-back does not land on the next; page caches are
   not dropped, and an untimed warm-up reads the repo once.  Every result is
   checked (size and sha256 of each file) before it counts, so a broken
   download cannot look fast.  The 1-minute load average after each run is
   recorded: other work on the machine shows there.

Run from the repository root::

    python3 bench/weights_pull.py [--size-gb 4] [--shards 8] [--rounds 2]
                                  [--hub static|olah] [--json]
"""

from __future__ import annotations

import argparse
import concurrent.futures
import hashlib
import json
import os
import platform
import random
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from llmfleet.lab import hub  # noqa: E402

FETCH_SCRIPT = ROOT / "files" / "scripts" / "llmfleet-fetch.py"
CACHE_ROOT = Path(os.environ.get("LLMFLEET_BENCH_CACHE", "/var/cache/llmfleet-bench"))
ORG = "llmfleet-bench"
METHODS = ("toolkit", "toolkit-hfhub", "hf-download", "local-limit")
MB = 1_000_000
CHUNK = 64 << 20
BUILD_DATE = "2025-01-01T00:00:00+0000"


# --------------------------------------------------------------------------
# The synthetic repo
# --------------------------------------------------------------------------


def repo_id_for(size_gb: float, shards: int) -> str:
    return f"{ORG}/synthetic-{size_gb:g}gb-{shards}shards"


def shard_name(i: int, shards: int) -> str:
    return f"model-{i + 1:05d}-of-{shards:05d}.safetensors"


def write_shard(path: Path, index: int, payload: int, seed: int) -> str:
    """A safetensors file: 8-byte header length, JSON header, one BF16 tensor of
    random bytes (``payload`` bytes, reproducible from ``seed``); return its sha256."""
    header = {
        "__metadata__": {"format": "pt"},
        f"model.layers.{index}.weight": {
            "dtype": "BF16",
            "shape": [payload // 2],
            "data_offsets": [0, payload],
        },
    }
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)
    digest = hashlib.sha256()
    rng = random.Random(seed * 1_000_003 + index)
    with open(path, "wb") as fh:
        for block in (len(raw).to_bytes(8, "little"), raw):
            fh.write(block)
            digest.update(block)
        left = payload
        while left:
            block = rng.randbytes(min(CHUNK, left))
            fh.write(block)
            digest.update(block)
            left -= len(block)
    return digest.hexdigest()


def write_model(work: Path, size_gb: float, shards: int, seed: int = 0) -> dict[str, dict]:
    """Write config.json, the index and the shards into ``work``; return
    {file: {"size", "sha256"}}.  Shards are written two at a time (randbytes and
    sha256 release the GIL on big blocks only partly, writes fully)."""
    payload = int(size_gb * 1e9) // shards // 2 * 2
    names = [shard_name(i, shards) for i in range(shards)]
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        digests = list(
            pool.map(lambda i: write_shard(work / names[i], i, payload, seed), range(shards))
        )
    small = {
        "config.json": {
            "architectures": ["LlamaForCausalLM"],
            "model_type": "llama",
            "torch_dtype": "bfloat16",
            "_comment": f"llmfleet benchmark: {shards} shards of random bytes, not a model",
        },
        "model.safetensors.index.json": {
            "metadata": {"total_size": payload * shards},
            "weight_map": {f"model.layers.{i}.weight": names[i] for i in range(shards)},
        },
    }
    files = {}
    for name, content in small.items():
        data = (json.dumps(content, indent=2, sort_keys=True) + "\n").encode()
        (work / name).write_bytes(data)
        files[name] = {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    for name, digest in zip(names, digests, strict=True):
        files[name] = {"size": (work / name).stat().st_size, "sha256": digest}
    return files


def ensure_repo(size_gb: float, shards: int, log) -> dict:
    """The cached repo and its manifest (written last: a manifest means a whole repo)."""
    key = CACHE_ROOT / f"synthetic-{size_gb:g}gb-{shards}shards"
    mirrors = key / "mirrors"
    repo_id = repo_id_for(size_gb, shards)
    work = hub.repo_path(mirrors, repo_id)
    manifest_path = key / "manifest.json"
    try:
        manifest = json.loads(manifest_path.read_text())
        if hub.refs(work).get("main") == manifest["commit"] and all(
            (work / f).stat().st_size == meta["size"] for f, meta in manifest["files"].items()
        ):
            log(f"repo: cached {work} ({manifest['commit'][:12]})")
            return manifest
    except (FileNotFoundError, KeyError, ValueError, hub.LabError):
        pass
    need = int(size_gb * 1e9 * 2.2)
    free = shutil.disk_usage(CACHE_ROOT.parent if not CACHE_ROOT.exists() else CACHE_ROOT).free
    if free < need + int(size_gb * 1e9 * 1.2):
        sys.exit(f"not enough disk for the repo and one run: {free / 1e9:.1f} GB free")
    log(f"repo: building {repo_id} ({size_gb:g} GB in {shards} shards) under {mirrors}")
    manifest_path.unlink(missing_ok=True)
    timings: dict[str, float] = {}
    files: dict[str, dict] = {}

    def write(tree: Path) -> None:
        t0 = time.monotonic()
        files.update(write_model(tree, size_gb, shards))
        timings["generate_s"] = round(time.monotonic() - t0, 1)
        timings["git_start"] = time.monotonic()

    refs = hub.build_repo_from_files(
        mirrors,
        repo_id,
        write,
        f"synthetic weights: {size_gb:g} GB, {shards} shards",
        date=BUILD_DATE,
        compression=0,
    )
    timings["git_add_commit_s"] = round(time.monotonic() - timings.pop("git_start"), 1)
    manifest = {
        "repo": repo_id,
        "commit": refs["main"],
        "mirrors": str(mirrors),
        "work_tree": str(work),
        "files": files,
        "bytes": sum(m["size"] for m in files.values()),
        "build": timings,
    }
    tmp = manifest_path.with_suffix(".tmp")
    tmp.write_text(json.dumps(manifest, indent=2) + "\n")
    tmp.replace(manifest_path)
    log(
        f"repo: built in {timings['generate_s']} s (random shards) + "
        f"{timings['git_add_commit_s']} s (git add/commit, zlib level 0)"
    )
    return manifest


# --------------------------------------------------------------------------
# Methods
# --------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def hf_cli() -> str:
    beside = Path(sys.executable).with_name("hf")  # skip pyenv's shim
    found = str(beside) if beside.exists() else shutil.which("hf")
    if not found:
        sys.exit("`hf` (huggingface_hub's CLI) not found")
    return found


def hub_env(hub_url: str, hf_home: Path) -> dict[str, str]:
    """The same environment for both HTTP clients: the endpoint, an empty HF_HOME
    (no token, no user config), no HF_* settings of the caller."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
    env.update(HF_ENDPOINT=hub_url, HF_HOME=str(hf_home), HF_HUB_DISABLE_TELEMETRY="1")
    return env


def snapshot_dir(cache_dir: Path, repo_id: str, commit: str) -> Path:
    return cache_dir / f"models--{repo_id.replace('/', '--')}" / "snapshots" / commit


def run_cli(argv: list[str], env: dict[str, str], out: Path) -> None:
    log = out.parent / f"{out.name}.log"  # beside the result, not in it
    with open(log, "wb") as fh:
        proc = subprocess.run(argv, env=env, stdout=fh, stderr=subprocess.STDOUT, check=False)
    if proc.returncode != 0:
        tail = log.read_text(errors="replace")[-1500:]
        raise RuntimeError(f"{argv[0]} exited {proc.returncode}:\n{tail}")


def run_toolkit(ctx: dict, out: Path, transfer: str = "auto") -> Path:
    argv = [
        sys.executable,
        str(FETCH_SCRIPT),
        "--repo",
        ctx["repo"],
        "--revision",
        ctx["commit"],
        "--cache-dir",
        str(out / "hf"),
        "--marker",
        str(out / "marker.json"),
        "--transfer",
        transfer,
    ]
    run_cli(argv, ctx["env"], out)
    if not (out / "marker.json").is_file():
        raise RuntimeError("llmfleet-fetch.py exited 0 without writing its marker")
    return snapshot_dir(out / "hf", ctx["repo"], ctx["commit"])


def run_hf_download(ctx: dict, out: Path) -> Path:
    argv = [
        ctx["hf"],
        "download",
        ctx["repo"],
        "--revision",
        ctx["commit"],
        "--cache-dir",
        str(out / "hf"),
    ]
    run_cli(argv, ctx["env"], out)
    return snapshot_dir(out / "hf", ctx["repo"], ctx["commit"])


def _sendfile(src: Path, dst: Path) -> None:
    with open(src, "rb") as fi, open(dst, "wb") as fo:
        size, offset = os.fstat(fi.fileno()).st_size, 0
        while offset < size:
            sent = os.sendfile(fo.fileno(), fi.fileno(), offset, min(size - offset, 1 << 30))
            if sent == 0:
                raise RuntimeError(f"short copy of {src}")
            offset += sent


def run_local_limit(ctx: dict, out: Path) -> Path:
    src, dst = Path(ctx["work_tree"]), out / "copy"
    names = sorted(ctx["files"], key=lambda f: -ctx["files"][f]["size"])  # big ones first
    dst.mkdir()
    with concurrent.futures.ThreadPoolExecutor(ctx["copy_threads"]) as pool:
        list(pool.map(lambda f: _sendfile(src / f, dst / f), names))
    return dst


RUNNERS = {
    "toolkit": run_toolkit,
    "toolkit-hfhub": lambda ctx, out: run_toolkit(ctx, out, "huggingface_hub"),
    "hf-download": run_hf_download,
    "local-limit": run_local_limit,
}


def fsync_tree(root: Path) -> None:
    """fsync every regular file and directory under ``root`` (symlinks not followed):
    the method's own writes only, whatever else the machine is writing."""
    for dirpath, _dirs, names in os.walk(root):
        for name in [*names, "."]:
            path = os.path.join(dirpath, name)
            if name != "." and not os.path.isfile(path) or os.path.islink(path):
                continue
            fd = os.open(path, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)


def cpu_seconds(pid: int | None) -> float:
    """utime + stime of a live process (0 when unknown)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError, TypeError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def children_cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


class HubServer:
    """The local Hub endpoint the HTTP methods pull from, in its own process (so its
    CPU is counted apart from the client's): the static sendfile server or olah."""

    def __init__(self, kind: str, manifest: dict, run_root: Path) -> None:
        self.kind, self.manifest, self.run_root = kind, manifest, run_root
        self.proc: subprocess.Popen | None = None
        self.log = run_root / "hub.log"

    def start(self) -> str:
        m = self.manifest
        if self.kind == "olah":
            return hub.start(
                Path(m["mirrors"]), self.run_root / "olah", "127.0.0.1", free_port(), m["repo"]
            )
        argv = [sys.executable, "-m", "llmfleet.lab.statichub", m["work_tree"], m["repo"]]
        self.proc = subprocess.Popen(
            [*argv, m["commit"]],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=open(self.log, "wb"),  # noqa: SIM115 (lives as long as the server)
            text=True,
        )
        line = self.proc.stdout.readline().strip()
        if not line.startswith("http://"):
            raise RuntimeError(f"static hub did not start: {self.log.read_text()[-1500:]}")
        return line

    def pid(self) -> int | None:
        return self.proc.pid if self.proc else hub.daemon(self.run_root / "olah").pid()

    def stop(self) -> str:
        """Stop it; return its log's tail."""
        if self.kind == "olah":
            tail = hub.daemon(self.run_root / "olah").log_tail(2000)
            hub.stop(self.run_root / "olah")
            return tail
        if self.proc:
            self.proc.terminate()
            self.proc.wait(10)
        return self.log.read_text(errors="replace")[-2000:] if self.log.exists() else ""


def warm_up(ctx: dict) -> None:
    """Untimed: read the repo (work tree and git objects) once, so no method pays
    for a cold page cache, and make olah answer one file request."""
    for path in Path(ctx["work_tree"]).rglob("*"):
        if path.is_file():
            with open(path, "rb") as fh:
                while fh.read(CHUNK):
                    pass
    url = f"{ctx['hub_url']}/{ctx['repo']}/resolve/{ctx['commit']}/config.json"
    with urllib.request.urlopen(url, timeout=60) as resp:
        resp.read()


def verify(result: Path, files: dict[str, dict]) -> None:
    """Every file present with the right size and sha256 (hashed in parallel)."""

    def check(name: str) -> str | None:
        path = result / name
        if not path.is_file():
            return f"{name}: missing"
        size = path.stat().st_size
        if size != files[name]["size"]:
            return f"{name}: {size} bytes, expected {files[name]['size']}"
        digest = hashlib.sha256()
        with open(path, "rb") as fh:
            while block := fh.read(CHUNK):
                digest.update(block)
        if digest.hexdigest() != files[name]["sha256"]:
            return f"{name}: sha256 differs"
        return None

    with concurrent.futures.ThreadPoolExecutor(os.cpu_count() or 2) as pool:
        problems = [p for p in pool.map(check, files) if p]
    if problems:
        raise RuntimeError("verification failed: " + "; ".join(problems))


# --------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------


def summarize(runs: list[dict], total_bytes: int) -> dict:
    summary = {}
    for method in METHODS:
        ok = [r["seconds"] for r in runs if r["method"] == method and r["ok"]]
        failed = sum(1 for r in runs if r["method"] == method and not r["ok"])
        if not ok:
            summary[method] = {"runs_s": [], "failed": failed}
            continue
        best, median = min(ok), statistics.median(ok)
        mine = [r for r in runs if r["method"] == method and r["ok"]]
        summary[method] = {
            "runs_s": [round(s, 2) for s in ok],
            "failed": failed,
            "best_returned_s": round(min(r["returned_s"] for r in mine), 2),
            "median_client_cpu_s": round(statistics.median(r["client_cpu_s"] for r in mine), 1),
            "median_olah_cpu_s": round(statistics.median(r["olah_cpu_s"] for r in mine), 1),
            "best_s": round(best, 2),
            "median_s": round(median, 2),
            "best_mb_s": round(total_bytes / MB / best, 1),
            "median_mb_s": round(total_bytes / MB / median, 1),
        }
    return summary


def ratios(summary: dict) -> dict:
    """Time ratios (toolkit seconds / other seconds): 2.0 = the toolkit takes twice as long."""
    out = {}
    pairs = (
        ("toolkit", "local-limit", "toolkit/limit"),
        ("toolkit", "hf-download", "toolkit/hf-download"),
        ("toolkit-hfhub", "hf-download", "toolkit-hfhub/hf-download"),
    )
    for mine, other, label in pairs:
        tk, o = summary[mine], summary[other]
        if "best_s" in tk and "best_s" in o:
            out[label] = {
                "best": round(tk["best_s"] / o["best_s"], 2),
                "median": round(tk["median_s"] / o["median_s"], 2),
            }
    return out


def table(result: dict) -> str:
    s, lines = result["summary"], []
    head = (
        f"{'method':<14} {'runs (s)':<20} {'best s':>7} {'median s':>9} "
        f"{'best MB/s':>10} {'median MB/s':>12} {'returned s':>11} {'CPU client/hub s':>18}"
    )
    lines += [head, "-" * len(head)]
    for method in METHODS:
        m = s[method]
        runs = ", ".join(f"{x:.1f}" for x in m["runs_s"]) + (
            f" (+{m['failed']} FAILED)" if m["failed"] else ""
        )
        if "best_s" in m:
            cpu = f"{m['median_client_cpu_s']:.1f} / {m['median_olah_cpu_s']:.1f}"
            lines.append(
                f"{method:<14} {runs:<20} {m['best_s']:>7.1f} {m['median_s']:>9.1f} "
                f"{m['best_mb_s']:>10.1f} {m['median_mb_s']:>12.1f} "
                f"{m['best_returned_s']:>11.1f} {cpu:>18}"
            )
        else:
            lines.append(f"{method:<14} {runs or 'FAILED':<20}")
    lines.append(
        "(seconds until the files are on disk: the method's run plus an fsync of what it "
        "wrote;\n 'returned s' = best time until the method returned; CPU = medians)"
    )
    lines.append("")
    for label, r in result["ratios"].items():
        lines.append(
            f"{label:<26} throughput ratio best {1 / r['best']:.2f}, median "
            f"{1 / r['median']:.2f} (time ratio best {r['best']:.2f}x)"
        )
    return "\n".join(lines)


# --------------------------------------------------------------------------


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--size-gb", type=float, default=4.0, help="total shard bytes, 1e9 (4)")
    p.add_argument("--shards", type=int, default=8, help="number of shard files (8)")
    p.add_argument("--rounds", type=int, default=2, help="runs per method, order rotated (2)")
    p.add_argument("--copy-threads", type=int, default=0, help="local-limit threads (= shards)")
    p.add_argument(
        "--hub",
        choices=("static", "olah"),
        default="static",
        help="the local Hub endpoint: static = sendfile server (CDN-like, default), "
        "olah = the lab's offline olah (itself the bottleneck near 20 MB/s)",
    )
    p.add_argument("--json", action="store_true", help="print the result as JSON only")
    a = p.parse_args()
    if a.rounds < 1 or a.shards < 1 or a.size_gb <= 0:
        p.error("--rounds, --shards and --size-gb must be positive")

    def log(msg: str) -> None:
        stream = sys.stderr if a.json else sys.stdout
        print(f"[{time.strftime('%T')}] {msg}", file=stream, flush=True)

    CACHE_ROOT.mkdir(parents=True, exist_ok=True)
    manifest = ensure_repo(a.size_gb, a.shards, log)
    run_root = Path(tempfile.mkdtemp(prefix="run-", dir=CACHE_ROOT))
    runs: list[dict] = []
    server = HubServer(a.hub, manifest, run_root)
    try:
        t0 = time.monotonic()
        hub_url = server.start()
        log(f"{a.hub} hub: {hub_url} up in {time.monotonic() - t0:.1f} s (run dir {run_root})")
        sha = hub.resolve_revision(hub_url, manifest["repo"], "main")
        if sha != manifest["commit"]:
            raise RuntimeError(f"the hub resolves main to {sha}, manifest: {manifest['commit']}")
        ctx = {
            **manifest,
            "hub_url": hub_url,
            "env": hub_env(hub_url, run_root / "hf-home"),
            "hf": hf_cli(),
            "copy_threads": a.copy_threads or a.shards,
        }
        t0 = time.monotonic()
        warm_up(ctx)
        log(f"warm-up (read the repo once, one request to the hub): {time.monotonic() - t0:.1f} s")
        olah_pid = server.pid()
        for rnd in range(a.rounds):
            order = METHODS[rnd % len(METHODS) :] + METHODS[: rnd % len(METHODS)]
            for method in order:
                out = run_root / f"r{rnd + 1}-{method}"
                out.mkdir()
                os.sync()  # earlier runs' write-back must not land in this timing
                entry = {"round": rnd + 1, "method": method}
                try:
                    cpu0, olah0 = children_cpu() + time.process_time(), cpu_seconds(olah_pid)
                    t0 = time.perf_counter()
                    result = RUNNERS[method](ctx, out)
                    returned = time.perf_counter() - t0
                    fsync_tree(out)
                    seconds = time.perf_counter() - t0
                    client_cpu = children_cpu() + time.process_time() - cpu0
                    olah_cpu = cpu_seconds(olah_pid) - olah0
                    verify(result, manifest["files"])
                    entry.update(
                        ok=True,
                        seconds=round(seconds, 3),
                        returned_s=round(returned, 3),
                        client_cpu_s=round(client_cpu, 2),
                        olah_cpu_s=round(olah_cpu, 2) if method != "local-limit" else 0.0,
                        load1=round(os.getloadavg()[0], 2),  # others' work on this machine
                    )
                    log(
                        f"round {rnd + 1} {method:<12} {seconds:7.1f} s on disk "
                        f"({returned:.1f} s to return) "
                        f"{manifest['bytes'] / MB / seconds:8.1f} MB/s; CPU client "
                        f"{client_cpu:.1f} s, hub {entry['olah_cpu_s']:.1f} s; "
                        f"load {entry['load1']:.1f}; verified"
                    )
                except Exception as exc:  # a failed method is reported, never timed
                    entry.update(ok=False, error=str(exc))
                    log(f"round {rnd + 1} {method:<12} FAILED: {exc}")
                runs.append(entry)
                shutil.rmtree(out)
    finally:
        olah_log = server.stop()
        shutil.rmtree(run_root, ignore_errors=True)

    summary = summarize(runs, manifest["bytes"])
    result = {
        "params": {
            "size_gb": a.size_gb,
            "shards": a.shards,
            "rounds": a.rounds,
            "copy_threads": a.copy_threads or a.shards,
            "hub": a.hub,
        },
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "huggingface_hub": metadata.version("huggingface_hub"),
            "hub": a.hub if a.hub == "static" else f"olah {metadata.version('olah')}",
        },
        "repo": manifest["repo"],
        "commit": manifest["commit"],
        "bytes": manifest["bytes"],
        "build": manifest["build"],
        "runs": runs,
        "summary": summary,
        "ratios": ratios(summary),
    }
    failed = any(not r["ok"] for r in runs)
    if failed and olah_log:
        result["hub_log_tail"] = olah_log
    if a.json:
        print(json.dumps(result, indent=2))
    else:
        print()
        print(
            f"{manifest['bytes'] / 1e9:.2f} GB in {a.shards} shards, {a.rounds} rounds, "
            f"{os.cpu_count()} CPUs, huggingface_hub {result['machine']['huggingface_hub']}, "
            f"{result['machine']['hub']} hub on 127.0.0.1"
        )
        print(table(result))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
