"""Every host/group-data key llmfleet reads: one typed schema, parsed once per host.

The schema is the ``Settings`` dataclass below: each field is one key, with
its type (the annotation), its default, a one-line doc, the deploys that read
it and, where it has them, allowed values and bounds.  ``parse_settings``
turns pyinfra's flat host data (inventory, group data, ``--data``) into a
``Settings`` during validation, before anything connects, so:

- a typo (``prot: 8001``) is an error naming the host, the key and the
  closest known key, never silently ignored;
- a bad value (``health_timeout: "ten"``) fails that host in the plan, never
  with a Python exception in the middle of a run;
- the README's key table is generated from here (``docs/settings.md``), so
  the documentation cannot drift from what the code reads.

pyinfra's own keys pass through untouched: connector keys (``ssh_*``,
``fake_*``, ``docker_*``, ...) and operation arguments (``_sudo``, ...).
Keys of your own (a rack name, an owner) go under ``x_``: llmfleet ignores
them.  Engine flags, environment variables and overlays are the
``flag.``/``env.``/``overlay.`` prefixed keys (or the ``flags``/``env``/
``overlays`` mappings).
"""

from __future__ import annotations

import difflib
import types
import typing
from dataclasses import MISSING, dataclass, field, fields
from functools import lru_cache
from typing import Any

from .errors import Problem, ValidationError
from .hostpaths import DEFAULT_HF_HOME

USER_PREFIX = "x_"
# stack_reboot: when the stack role may reboot a host (llmfleet/stacks/verify.py decides)
REBOOT_POLICIES = ("auto", "never", "always")
PREFIXES = {
    "flag.": (
        "flags",
        "set an engine flag: flag.--max-model-len=4096; true = bare switch, false = drop it",
    ),
    "env.": ("env", "add a variable to the server's environment file"),
    "overlay.": ("overlays", "apply an overlay: overlay.tool-calling=true, overlay.mtp-tokens=3"),
}
HUB_REQUIREMENT = "huggingface_hub>=0.34"

# deploys, as named in the table
SERVE, WEIGHTS, ROLLBACK, ONBOARD, PREFLIGHT, MIRROR, REGISTRY, MONITOR, ROUTER = (
    "serve",
    "weights",
    "rollback",
    "onboard",
    "preflight",
    "mirror",
    "registry",
    "monitor",
    "router",
)
# "plan": the key shapes the rendered command/unit, so `recipes render --set` takes it too
RENDER_KEY = "plan"
RENDER = (SERVE, WEIGHTS, RENDER_KEY)


def key(
    default: Any,
    doc: str,
    deploys: tuple[str, ...] | str,
    *,
    choices: tuple[str, ...] = (),
    minimum: float | None = None,
    maximum: float | None = None,
) -> Any:
    """One schema entry: a dataclass field carrying its doc, deploys and bounds."""
    meta = {
        "doc": doc,
        "deploys": (deploys,) if isinstance(deploys, str) else tuple(deploys),
        "choices": choices,
        "minimum": minimum,
        "maximum": maximum,
    }
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda: type(default)(default), metadata=meta)
    return field(default=default, metadata=meta)


@dataclass(frozen=True)
class Settings:
    """One host's settings: every key llmfleet reads, typed, with its default."""

    # --- what the host is and serves
    hardware: str | None = key(
        None,
        "hardware profile (files/hardware/): h200, b200, mi300x, cpu, ...",
        (SERVE, WEIGHTS, ONBOARD, PREFLIGHT),
    )
    recipe: str | None = key(
        None,
        "recipe id (llmfleet recipes list); optional for onboard and preflight",
        (SERVE, WEIGHTS, ONBOARD, PREFLIGHT),
    )
    # --- how the recipe is deployed (also --set KEY=VALUE of `recipes render`)
    model_path: str | None = key(
        None,
        "weights directory the engine loads (default: the pinned snapshot in hf_home)",
        RENDER,
    )
    model_repo: str | None = key(
        None, "Hub repo of the weights instead of the recipe's (same architecture)", RENDER
    )
    revision: str | None = key(
        None,
        "model revision (branch, tag or commit; default the recipe's), pinned to a "
        "commit on the control node",
        RENDER,
    )
    bind: str | None = key(None, "address the engine binds (default the recipe's)", RENDER)
    port: int | None = key(
        None,
        "TCP port the engine listens on (default the recipe's, usually 8000)",
        RENDER,
        minimum=1,
        maximum=65535,
    )
    served_name: str | None = key(
        None, "model name clients send (--served-model-name; default the recipe's)", RENDER
    )
    runtime: str | None = key(
        None,
        "venv (pinned Python environment) or docker (pinned image); default the recipe's",
        RENDER,
        choices=("venv", "docker"),
    )
    image: str | None = key(
        None,
        "container image for the docker runtime (a tag is pinned to its digest on the "
        "control node)",
        RENDER,
    )
    venv: str | None = key(
        None,
        "engine environment path (default /opt/llmfleet/engines/<engine>-<hash of pins>)",
        SERVE,
    )
    hf_home: str = key(
        DEFAULT_HF_HOME,
        "Hugging Face cache on the host, shared by releases",
        (*RENDER, PREFLIGHT),
    )
    # --- multi-node recipes: one server over several hosts (docs/multinode.md)
    serve_group: str | None = key(
        None,
        "serving group of a multi-node recipe: the hosts with the same serve_group form one "
        "server (ranks in inventory order); set it in the pyinfra group's data",
        (SERVE, WEIGHTS),
    )
    node_rank: int | None = key(
        None,
        "this host's rank in a multi-node recipe (default: its place in the serve_group's "
        "inventory order, else 0)",
        RENDER,
        minimum=0,
    )
    master_addr: str | None = key(
        None,
        "rank 0's address, multi-node recipes (default in a serve_group: rank 0's group_address)",
        RENDER,
    )
    group_address: str | None = key(
        None,
        "this host's address on the serving group's network (default its ssh_hostname); "
        "VLLM_HOST_IP/HCCL_IF_IP when an IP",
        RENDER,
    )
    dist_port: int | None = key(
        None,
        "rank 0's rendezvous port: SGLang --dist-init-addr (20000), vLLM --master-port "
        "(29501) or --data-parallel-rpc-port (13345)",
        RENDER,
        minimum=1,
        maximum=65535,
    )
    network_interface: str | None = key(
        None,
        "NIC of the serving group's network (NCCL/Gloo/HCCL socket variables of multi-node "
        "recipes; Ascend recipes)",
        RENDER,
    )
    flags: dict[str, str] = key({}, "engine flags by name (same as flag.NAME keys)", RENDER)
    env: dict[str, str] = key({}, "environment variables (same as env.NAME keys)", RENDER)
    overlays: dict[str, str] = key({}, "overlays by id (same as overlay.ID keys)", RENDER)
    host_memory_gb: float | None = key(
        None, "memory the cpu profile may use for the memory-fit check", RENDER, minimum=0
    )
    # --- engine environment and packages
    engine_packages: list[str] = key([], "engine packages instead of the recipe's pins", SERVE)
    engine_find_links: str | None = key(
        None,
        "site wheelhouse URL or path (pip --find-links, no index)",
        (SERVE, WEIGHTS, MIRROR, ROUTER),
    )
    engine_index_url: str | None = key(
        None, "site package index URL", (SERVE, WEIGHTS, MIRROR, ROUTER)
    )
    engine_excludes: str | None = key(
        None,
        "requirements file of packages to keep out of every environment (uv --excludes)",
        (SERVE, WEIGHTS, MIRROR, ROUTER),
    )
    uv_url: str | None = key(
        None,
        "URL of a uv binary (air-gapped sites); default pip installs uv",
        (SERVE, WEIGHTS, MIRROR, ROUTER),
    )
    uv_requirement: str = key(
        "uv", "pip requirement for uv when uv_url is unset", (SERVE, WEIGHTS, MIRROR, ROUTER)
    )
    # --- the server unit, releases and health
    service_user: str = key("llmfleet", "system user the engine runs as (venv runtime)", SERVE)
    systemd_hardening: bool = key(True, "ProtectSystem, NoNewPrivileges, ... in the unit", SERVE)
    health_timeout: int = key(
        900,
        "seconds a new release has to serve (health, models, one completion)",
        (SERVE, ROLLBACK),
        minimum=1,
    )
    release_keep: int = key(
        5,
        "releases kept per host (current and previous always)",
        (SERVE, ROLLBACK, ROUTER),
        minimum=2,
    )
    release: str | None = key(
        None, "release id (or prefix) to roll back to; default the previous one", ROLLBACK
    )
    api_key: bool = key(
        False,
        "generate an endpoint API key per host on the control node (vLLM; the router)",
        (SERVE, ROUTER),
    )
    api_key_file: str | None = key(
        None, "control-node file holding the endpoint API key", (SERVE, ROUTER)
    )
    # --- weights
    hf_endpoint: str | None = key(
        None,
        "Hub endpoint the hosts pull from (a site mirror, http://CACHE:8090)",
        (SERVE, WEIGHTS, MIRROR),
    )
    hf_control_endpoint: str | None = key(
        None,
        "Hub endpoint the control node resolves revisions at (default hf_endpoint)",
        (SERVE, WEIGHTS),
    )
    hub_requirement: str = key(
        HUB_REQUIREMENT, "huggingface_hub pin of the hosts' pull tool venv", (SERVE, WEIGHTS)
    )
    weights_workers: int = key(8, "files pulled in parallel", (SERVE, WEIGHTS), minimum=1)
    weights_include: list[str] = key([], "only files matching these globs", (SERVE, WEIGHTS))
    weights_verify: bool = key(
        False,
        "check every file's sha256 on every run (sizes are always checked)",
        (SERVE, WEIGHTS),
    )
    weights_peer: str | None = key(
        None, "inventory host to copy weights from (fan-out without a mirror)", (SERVE, WEIGHTS)
    )
    weights_peer_port: int = key(
        8099, "port the peer serves weights on", (SERVE, WEIGHTS), minimum=1, maximum=65535
    )
    weights_swarm: bool = key(
        False,
        "every host of the run pulling the same snapshot serves its verified pieces to "
        "the others (the Hub sends one copy; upload capacity grows with the fleet)",
        (SERVE, WEIGHTS),
    )
    weights_piece_mb: int = key(
        16, "piece size of the swarm, MiB", (SERVE, WEIGHTS), minimum=1, maximum=1024
    )
    # --- container runtime (docker recipes) and the site registry (deploys/registry.py)
    image_registry: str | None = key(
        None,
        "site registry (HOST:PORT) hosts pull images through: a pull-through cache",
        SERVE,
    )
    insecure_registries: list[str] = key(
        [], "registries reached over plain HTTP (docker's insecure-registries)", SERVE
    )
    docker_version: str | None = key(
        None,
        "docker.io package version to install and hold (default files/runtimes/docker.yaml)",
        SERVE,
    )
    docker_data_root: str | None = key(
        None, "docker's data-root, on the fast disk (default /var/lib/docker)", SERVE
    )
    docker_log_max_size: str = key("100m", "container log rotation: size of one file", SERVE)
    docker_log_max_file: int = key(5, "container log rotation: files kept", SERVE, minimum=1)
    container_stop_timeout: int = key(
        120, "seconds docker stop waits for the engine before SIGKILL", SERVE, minimum=1
    )
    registry_port: int = key(5000, "port of the site registry", REGISTRY, minimum=1, maximum=65535)
    registry_upstream: str | None = key(
        None, "registry the site registry caches (default Docker Hub)", REGISTRY
    )
    # --- the fleet's router (deploys/router.py) and drain-aware rollouts
    router: bool = key(
        False,
        "this host runs the fleet's router: one endpoint in front of every serving host "
        "(a serve_group's rank 0 only); a router host without a recipe serves nothing itself",
        (SERVE, ROUTER, ROLLBACK),
    )
    router_port: int = key(
        30000, "port of the router's endpoint", (ROUTER, ROLLBACK), minimum=1, maximum=65535
    )
    router_metrics_port: int = key(
        29000,
        "port of the router's Prometheus metrics (the monitor deploy scrapes it there)",
        (ROUTER, MONITOR),
        minimum=1,
        maximum=65535,
    )
    router_policy: str | None = key(
        None,
        "routing policy (default the router file's: cache_aware); files/routers/ lists them",
        ROUTER,
    )
    router_health_interval: int = key(
        5,
        "seconds between the router's health checks of each server",
        ROUTER,
        minimum=1,
        maximum=300,
    )
    drain_timeout: int = key(
        120,
        "seconds a rollout or rollback waits for a server's in-flight requests once it is "
        "out of the router",
        (SERVE, ROLLBACK),
        minimum=0,
    )
    # --- site mirror (deploys/mirror.py)
    mirror_port: int = key(8090, "port of the olah Hub mirror", MIRROR, minimum=1, maximum=65535)
    mirror_upstream: str | None = key(
        None, "Hub the mirror caches (default hf_endpoint, else huggingface.co)", MIRROR
    )
    mirror_cache_size: str = key("2TB", "olah cache size limit", MIRROR)
    # --- monitoring (deploys/monitor.py, llmfleet top; docs/observability.md)
    monitoring: bool = key(
        False,
        "engines serve Prometheus metrics (SGLang gets --enable-metrics); deploys/monitor.py "
        "needs it on SGLang hosts",
        (*RENDER, MONITOR),
    )
    monitor_host: str | None = key(
        None,
        "inventory host running Prometheus and Alertmanager for the fleet (default: the "
        "inventory's first host); set it in group data",
        MONITOR,
    )
    prometheus_port: int = key(9090, "Prometheus port", MONITOR, minimum=1, maximum=65535)
    alertmanager_port: int = key(9093, "Alertmanager port", MONITOR, minimum=1, maximum=65535)
    node_exporter_port: int = key(
        9100, "node exporter port (every host)", MONITOR, minimum=1, maximum=65535
    )
    scrape_interval: int = key(
        15, "seconds between scrapes (and rule evaluations)", MONITOR, minimum=1, maximum=3600
    )
    prometheus_retention: str = key("15d", "how long Prometheus keeps samples", MONITOR)
    alert_webhook_url: str | None = key(
        None, "where Alertmanager posts firing alerts (a webhook); default: nowhere", MONITOR
    )
    accelerator_exporter: str | None = key(
        None,
        "accelerator exporter Prometheus scrapes here: an id of files/monitoring/exporters.yaml "
        "(default the hardware's vendor; none: no exporter)",
        MONITOR,
    )
    alert_engine_down_for: int = key(
        60, "seconds an engine's /metrics is down before EngineDown fires", MONITOR, minimum=0
    )
    alert_restarts_max: int = key(
        3, "server unit restarts in 15 minutes before UnitRestarting fires", MONITOR, minimum=0
    )
    alert_kv_cache_max: float = key(
        0.95, "KV-cache use (0..1) above which KvCacheFull fires", MONITOR, minimum=0, maximum=1
    )
    alert_kv_cache_for: int = key(
        300, "seconds the KV cache stays above alert_kv_cache_max", MONITOR, minimum=0
    )
    alert_waiting_max: int = key(
        50, "requests waiting above which RequestsWaiting fires", MONITOR, minimum=0
    )
    alert_waiting_for: int = key(
        300, "seconds the queue stays above alert_waiting_max", MONITOR, minimum=0
    )
    alert_ttft_p99_s: float | None = key(
        None,
        "p99 time to first token (s) above which TtftP99High fires (default: the recipe's "
        "benchmark p99, else 30)",
        MONITOR,
        minimum=0,
    )
    alert_disk_free_gb: float | None = key(
        None,
        "free GB at hf_home below which WeightsDiskLow fires (default: one more copy of the "
        "recipe's weights, for the next revision)",
        MONITOR,
        minimum=0,
    )
    alert_gpu_temp_max: float = key(
        85, "accelerator temperature (C) above which GpuHot fires", MONITOR, minimum=0
    )
    # --- onboarding: accelerator stack and tuning
    accelerator_stack: str | None = key(
        None,
        "vendor stack to install: a files/stacks/ id (default the hardware's vendor; none skips)",
        ONBOARD,
    )
    stack_reboot: str = key(
        "auto",
        "reboot when a kernel module changed: auto, never, always",
        ONBOARD,
        choices=REBOOT_POLICIES,
    )
    nvidia_driver_version: str | None = key(
        None, "NVIDIA driver branch or version (moves the whole stack)", ONBOARD
    )
    nvidia_open_modules: bool = key(True, "NVIDIA open kernel modules", ONBOARD)
    vendor_mirrors: dict[str, str] = key({}, "vendor repo URL prefix -> site mirror URL", ONBOARD)
    devices_per_host: int | None = key(
        None,
        "devices the stack verify expects (default the hardware profile's)",
        ONBOARD,
        minimum=0,
    )
    cann_installer_url: str | None = key(None, "where the CANN installers are (Ascend)", ONBOARD)
    cann_sha256: dict[str, str] = key({}, "installer file -> sha256 (Ascend)", ONBOARD)
    tuning_strict: bool = key(False, "fail the host when a tuning knob cannot be set", ONBOARD)
    tuning_in_container: bool = key(
        False, "tune kernel-global knobs even inside a container", ONBOARD
    )

    def overrides(self) -> dict[str, str]:
        """The render keys that differ from the defaults, flat and as text: what a release
        manifest records as the deployment's own choices."""
        out: dict[str, str] = {}
        for f in fields(self):
            if RENDER_KEY not in f.metadata["deploys"] or f.name in ("hardware", "recipe"):
                continue
            value = getattr(self, f.name)
            if f.name in ("flags", "env", "overlays"):
                prefix = next(p for p, (attr, _) in PREFIXES.items() if attr == f.name)
                out.update({f"{prefix}{k}": v for k, v in value.items()})
            elif value != _default(f):
                out[f.name] = text(value)
        return out


def _default(f) -> Any:
    return f.default_factory() if f.default is MISSING else f.default


def text(value: Any) -> str:
    """Values as engine flags and env files write them: booleans lower case."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


@lru_cache(maxsize=1)
def _types() -> dict[str, Any]:
    return typing.get_type_hints(Settings)


@lru_cache(maxsize=1)
def schema() -> dict[str, Any]:
    """name -> dataclass field, in declaration order."""
    return {f.name: f for f in fields(Settings)}


# pyinfra's own data: operation arguments (``_sudo``) and connector keys.  Prefixes only
# where a connector owns a whole namespace; ``docker_*`` is shared with our settings,
# so only the docker connector's exact keys pass.
PYINFRA_PREFIXES = ("_", "ssh_", "fake_", "chroot_", "winrm_")
PYINFRA_KEYS = {"docker_container_id", "prompted_sudo_password"}


@lru_cache(maxsize=1)
def _connector_keys() -> frozenset[str]:
    from pyinfra.api.connectors import get_all_connectors

    return frozenset(
        key
        for connector in get_all_connectors().values()
        for key in getattr(connector.data_cls, "__annotations__", {})
    )


def is_pyinfra_key(name: str) -> bool:
    if name in schema():
        return False
    return name in PYINFRA_KEYS or name in _connector_keys() or name.startswith(PYINFRA_PREFIXES)


_TRUE, _FALSE = {"true", "yes", "on", "1"}, {"false", "no", "off", "0"}


def _coerce(name: str, value: Any, kind: Any) -> Any:
    """``value`` as ``kind``; raises ValueError with a readable reason."""
    args = typing.get_args(kind)
    if isinstance(kind, types.UnionType) or typing.get_origin(kind) is typing.Union:
        if value is None:
            return None
        kind = next(a for a in args if a is not type(None))
    origin = typing.get_origin(kind)
    if origin is list:
        if isinstance(value, str):
            return [value]
        if isinstance(value, (list, tuple)) and all(
            isinstance(v, (str, int, float)) for v in value
        ):
            return [str(v) for v in value]
        raise ValueError("expected a list of strings")
    if origin is dict:
        if isinstance(value, dict):
            return {str(k): text(v) for k, v in value.items()}
        if name in ("flags", "overlays") and isinstance(value, (list, tuple)):
            return {str(v): "true" for v in value}
        raise ValueError("expected a mapping")
    if kind is bool:
        if isinstance(value, bool):
            return value
        if str(value).strip().lower() in _TRUE | _FALSE:
            return str(value).strip().lower() in _TRUE
        raise ValueError("expected true or false")
    if kind in (int, float):
        noun = "an integer" if kind is int else "a number"
        if isinstance(value, (bool, dict, list, tuple)):
            raise ValueError(f"expected {noun}")
        if kind is int and isinstance(value, float):
            if not value.is_integer():
                raise ValueError(f"expected {noun}")
            return int(value)
        try:
            return kind(str(value).strip())
        except ValueError:
            raise ValueError(f"expected {noun}") from None
    if isinstance(value, (dict, list, tuple)) or value is None:
        raise ValueError("expected a string")
    return text(value)


def _check_bounds(f, value: Any) -> str | None:
    meta = f.metadata
    if value is None:
        return None
    if meta["choices"] and value not in meta["choices"]:
        return f"expected one of {', '.join(meta['choices'])}"
    lo, hi = meta["minimum"], meta["maximum"]
    if lo is not None and value < lo:
        return f"must be at least {lo:g}"
    if hi is not None and value > hi:
        return f"must be at most {hi:g}"
    return None


def closest(name: str) -> str | None:
    """The known key (or prefix) a typo most likely meant."""
    known = [*schema(), *PREFIXES]
    hits = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
    return hits[0] if hits else None


def _unknown(host: str, name: str) -> Problem:
    near = closest(name)
    fix = f"did you mean {near}?" if near else "see docs/settings.md"
    return Problem(
        host, name, "unknown key", fix=f"{fix} (keys of your own go under {USER_PREFIX}...)"
    )


def parse_settings(host: str, data: dict[str, Any]) -> tuple[Settings, list[Problem]]:
    """Parse and coerce flat host data; every problem names the host and the key.

    Bad keys leave their default in place, so the caller can still report
    everything else; a host with any problem must not be deployed.
    """
    known, kinds = schema(), _types()
    values: dict[str, Any] = {}
    nested: dict[str, dict[str, str]] = {attr: {} for attr, _ in PREFIXES.values()}
    problems: list[Problem] = []
    for name, value in data.items():
        if name.startswith(USER_PREFIX) or is_pyinfra_key(name):
            continue
        prefix = next((p for p in PREFIXES if name.startswith(p)), None)
        if prefix:
            if value is not None:
                nested[PREFIXES[prefix][0]][name[len(prefix) :]] = text(value)
            continue
        if name not in known:
            problems.append(_unknown(host, name))
            continue
        if value is None:  # group data may set None to mean "the default"
            continue
        try:
            coerced = _coerce(name, value, kinds[name])
        except ValueError as exc:
            problems.append(
                Problem(host, name, f"{value!r}: {exc}", fix=known[name].metadata["doc"])
            )
            continue
        why = _check_bounds(known[name], coerced)
        if why:
            problems.append(Problem(host, name, f"{value!r}: {why}"))
            continue
        values[name] = coerced
    for attr, extra in nested.items():
        if extra:
            values[attr] = {**values.get(attr, {}), **extra}
    return Settings(**values), problems


def schema_markdown() -> str:
    """The README's key table (docs/settings.md), generated so it cannot drift."""
    kinds = _types()
    lines = [
        "| key | type | default | deploys | what |",
        "|---|---|---|---|---|",
    ]
    for name, f in schema().items():
        kind = str(kinds[name]).replace("typing.", "").replace("NoneType", "None")
        kind = kind.replace("<class '", "").replace("'>", "")
        default = _default(f)
        shown = "-" if default in (None, [], {}) else f"`{text(default)}`"
        doc = f.metadata["doc"]
        if f.metadata["choices"]:
            doc += f" (one of: {', '.join(f.metadata['choices'])})"
        kind_text = kind.replace("|", "\\|")
        lines.append(
            f"| `{name}` | {kind_text} | {shown} | {', '.join(f.metadata['deploys'])} | {doc} |"
        )
    for prefix, (_attr, doc) in PREFIXES.items():
        lines.append(f"| `{prefix}NAME` | str | - | {', '.join(RENDER)} | {doc} |")
    lines.append(f"| `{USER_PREFIX}*` | any | - | - | yours: llmfleet ignores them |")
    return "\n".join(lines) + "\n"


def settings_from(data: dict[str, Any], host: str = "-") -> Settings:
    """``parse_settings`` for callers that stop at the first bad host (the CLI, tests)."""
    settings, problems = parse_settings(host, data)
    if problems:
        raise ValidationError(problems)
    return settings


def schema_json() -> list[dict[str, Any]]:
    """Every key as data, for scripts (``llmfleet settings --json``)."""
    kinds = _types()
    return [
        {
            "key": name,
            "type": str(kinds[name]).replace("typing.", "").replace("NoneType", "None"),
            "default": _default(f),
            "deploys": list(f.metadata["deploys"]),
            "choices": list(f.metadata["choices"]),
            "doc": f.metadata["doc"],
        }
        for name, f in schema().items()
    ]
