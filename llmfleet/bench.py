"""``llmfleet bench``: each host's recipe benchmark against its endpoint, kept with its release.

Per host, in inventory order (one at a time: benchmarks that share a control
node or a network path would measure each other):

1. the host's release state over SSH (current and previous release, manifest);
2. the workload: the guide's command for the host's recipe (or ``--guide``'s),
   with the operator's overrides (``llmfleet/benchspec.py``);
3. the tokenizer files of the release's model at its pinned commit, fetched
   once to the control node (the client makes its prompts from them);
4. the pinned client (``llmfleet/benchclient.py``) against
   ``http://HOST:PORT``, its figures stored per host and release
   (``llmfleet/benchstore.py``), set beside the guide's and the previous
   release's figures.

A host that cannot be measured gets its own error row; the others go on.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from . import benchclient, benchstore
from .benchclient import Client, Source, Target
from .benchspec import BenchParams, GuidePoint, choose_params, guide_points, matching_point
from .benchstore import BenchRun
from .catalog import Catalog
from .errors import LlmfleetError, ValidationError
from .manifest import ReleaseManifest, ReleaseState
from .settings import Settings, settings_from

LOOPBACK = ("127.0.0.1", "localhost", "::1")
# the files a client needs to make prompts of a given token length (never weights)
TOKENIZER_FILES = ["*.json", "*.model", "*.tiktoken", "*.txt", "*.py"]


@dataclass(frozen=True)
class HostState:
    """What the host runs, read over SSH: its release state (or why it could not be read)."""

    name: str
    data: dict[str, Any]
    state: ReleaseState | None = None
    error: str = ""


@dataclass
class HostBench:
    """One host's benchmark: the runs made now, the guide's point and the previous release's."""

    host: str
    release: str | None = None
    recipe: str | None = None
    hardware: str = ""
    runs: list[BenchRun] = field(default_factory=list)
    guide: GuidePoint | None = None
    guide_recipe: str | None = None
    guide_hardware: str = ""
    guide_same_workload: bool = False
    guide_points: list[GuidePoint] = field(default_factory=list)
    previous: list[BenchRun | None] = field(default_factory=list)
    stored: list[Path] = field(default_factory=list)
    error: str = ""

    @property
    def ok(self) -> bool:
        return not self.error and bool(self.runs)


@dataclass(frozen=True)
class Request:
    """What the operator asked for: overrides, sweep, where results go, which guide."""

    overrides: dict[str, int | None] = field(default_factory=dict)
    sweep: tuple[int, ...] = ()
    guide: str | None = None
    tokenizer: str | None = None
    results: Path = field(default_factory=benchstore.default_root)
    client_source: Source | None = None
    timeout: float = 3600
    # runs per workload; the best one (highest output tok/s) is kept
    repeat: int = 1


def hardware_name(cat: Catalog, hid: str) -> str:
    """``8 x B200``: how the table names the hardware a figure came from."""
    try:
        hw = cat.hw(hid)
    except LlmfleetError:
        return hid
    return f"{hw.devices_per_host} x {hw.device_name}"


def read_states(hosts: list[tuple[str, dict[str, Any]]]) -> list[HostState]:
    """Each host's release state, one SSH round trip per host, in parallel."""
    from . import oncall
    from .manifest import list_command

    out = []
    for r in oncall.run_everywhere(hosts, list_command()):
        data = dict(hosts)[r.host]
        if not r.ok or not r.stdout.strip():
            out.append(HostState(r.host, data, error=r.error or "no release state"))
            continue
        out.append(HostState(r.host, data, ReleaseState.from_json(_last_json(r.stdout))))
    return out


def _last_json(stdout: str) -> dict[str, Any]:
    import json

    return json.loads(stdout.strip().splitlines()[-1])


def fleet_source(hosts: list[tuple[str, dict[str, Any]]]) -> Source:
    """The client comes from the fleet's package source, when the hosts agree on one."""
    found = {
        (d.get("engine_find_links"), d.get("engine_index_url"))
        for _, d in hosts
        if d.get("engine_find_links") or d.get("engine_index_url")
    }
    if len(found) == 1:
        find_links, index_url = found.pop()
        return Source(find_links, index_url)
    return Source()


def fetch_tokenizer(repo: str, commit: str, endpoint: str | None, cache: Path) -> str:
    """The model's tokenizer files at the release's commit, into the control node's cache."""
    from huggingface_hub import snapshot_download

    try:
        return snapshot_download(
            repo_id=repo,
            revision=commit,
            allow_patterns=TOKENIZER_FILES,
            cache_dir=str(cache),
            endpoint=endpoint,
        )
    except Exception as exc:  # the row must say why, whatever the Hub answered
        raise LlmfleetError(
            f"tokenizer of {repo}@{commit[:12]} from {endpoint or 'the Hub'}: "
            f"{type(exc).__name__}: {exc} (fix: --tokenizer DIR with the model's tokenizer "
            "files, or hf_endpoint / HF_TOKEN for the Hub)"
        ) from exc


def endpoint_url(name: str, data: dict[str, Any], m: ReleaseManifest, engine: dict) -> str:
    """Where the control node reaches the release: the SSH address and the release's port;
    a server bound to loopback cannot be measured from here."""
    argv = list(m.argv)
    flag = engine.get("host_flag", "--host")
    bind = argv[argv.index(flag) + 1] if flag in argv[:-1] else "0.0.0.0"
    if bind in LOOPBACK:
        raise LlmfleetError(
            f"{name}: bind: the server listens on {bind} only, out of the control node's reach "
            "(fix: bind=0.0.0.0 with a firewall, or benchmark through a router)"
        )
    address = str(data.get("ssh_hostname") or name)
    return f"http://[{address}]:{m.port}" if ":" in address else f"http://{address}:{m.port}"


def _settings(name: str, data: dict[str, Any]) -> Settings:
    keep = {k: v for k, v in data.items() if not k.startswith("ssh_")}
    try:
        return settings_from(keep, name)
    except ValidationError as exc:
        raise LlmfleetError(str(exc)) from exc


def plan_host(
    cat: Catalog, client: Client, hs: HostState, req: Request
) -> tuple[HostBench, list[BenchParams], Target | None]:
    """Everything about one host's benchmark that is known before a request is sent."""
    hb = HostBench(hs.name)
    if hs.error or hs.state is None:
        hb.error = f"unreachable: {hs.error}"
        return hb, [], None
    current = hs.state.current
    if not current or current not in hs.state.releases:
        hb.error = "no current release (fix: deploy it: pyinfra INVENTORY deploys/serve.py)"
        return hb, [], None
    m = hs.state.releases[current]
    s = _settings(hs.name, hs.data)
    recipe = cat.recipe(m.recipe)
    hb.release, hb.recipe = current, m.recipe
    hb.hardware = hardware_name(cat, s.hardware or recipe.hardware)
    guide = cat.recipe(req.guide) if req.guide else recipe
    hb.guide_recipe, hb.guide_hardware = guide.id, hardware_name(cat, guide.hardware)
    hb.guide_points = guide_points(guide.benchmark, client.backends)
    own = guide_points(recipe.benchmark, client.backends)
    base = choose_params(
        hs.name, m.recipe, own or hb.guide_points, req.overrides, client.default_backend
    )
    params = [replace(base, concurrency=c) for c in req.sweep] if req.sweep else [base]
    match = matching_point(hb.guide_points, base)
    hb.guide = match or (hb.guide_points[0] if hb.guide_points else None)
    hb.guide_same_workload = match is not None
    engine = cat.engines[recipe.engine]
    api_key = None
    if s.api_key or s.api_key_file:
        from .apikeys import api_key_for

        api_key = api_key_for(hs.name, s, engine)
    tokenizer = req.tokenizer or fetch_tokenizer(
        m.model_repo, m.commit, s.hf_endpoint, benchclient.cache_root() / "tokenizers"
    )
    url = endpoint_url(hs.name, hs.data, m, engine)
    return hb, params, Target(hs.name, url, m.served_name, tokenizer, api_key)


def bench_fleet(
    cat: Catalog,
    hosts: list[tuple[str, dict[str, Any]]],
    req: Request,
    say: Callable[[str], None] = print,
    states: list[HostState] | None = None,
) -> list[HostBench]:
    """Benchmark every host, one at a time; results stored as they come."""
    client = benchclient.load_client()
    states = states if states is not None else read_states(hosts)
    venv: Path | None = None
    out = []
    for hs in states:
        try:
            hb, params, target = plan_host(cat, client, hs, req)
        except LlmfleetError as exc:
            out.append(HostBench(hs.name, error=str(exc)))
            continue
        out.append(hb)
        if target is None:
            continue
        prefer = hs.state.previous if hs.state else None
        try:
            venv = venv or benchclient.ensure_env(
                client, req.client_source or fleet_source(hosts), say
            )
            for p in params:
                say(f"{hs.name}: release {hb.release}: {p.describe()}")
                tries = benchclient.run(client, venv, p, target, req.timeout, req.repeat)
                # the best: whatever else ran on the machine only ever slows a run down
                metrics = max(tries, key=lambda m: m.get("output_tok_s") or 0)
                run = BenchRun(
                    host=hs.name,
                    release=hb.release or "",
                    recipe=hb.recipe or "",
                    hardware=hb.hardware,
                    params=p,
                    metrics=metrics,
                    client=benchclient.client_facts(client),
                    endpoint=target.url,
                    repeats=tuple(m.get("output_tok_s") or 0 for m in tries)
                    if req.repeat > 1
                    else (),
                )
                hb.previous.append(
                    benchstore.previous(req.results, hs.name, run.release, p, client.digest, prefer)
                )
                hb.stored.append(benchstore.save(req.results, run))
                hb.runs.append(run)
        except LlmfleetError as exc:
            hb.error = str(exc)
    return out


def sweep_values(text: str | None) -> tuple[int, ...]:
    """``--sweep 1,4,16,64`` -> (1, 4, 16, 64); each a positive concurrency."""
    if not text:
        return ()
    try:
        values = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError as exc:
        raise LlmfleetError(f"--sweep {text!r}: use concurrencies, e.g. 1,4,16,64") from exc
    if not values or any(v < 1 for v in values):
        raise LlmfleetError(f"--sweep {text!r}: each concurrency must be 1 or more")
    return values


def env_source(find_links: str | None, index_url: str | None) -> Source | None:
    """The operator's own client source (``--client-find-links`` / ``--client-index-url``)."""
    find_links = find_links or os.environ.get("LLMFLEET_BENCH_FIND_LINKS")
    index_url = index_url or os.environ.get("LLMFLEET_BENCH_INDEX_URL")
    return Source(find_links, index_url) if (find_links or index_url) else None
