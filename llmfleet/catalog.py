"""The recipe catalog: vendor-guide configurations, hardware and overlays as data.

Everything is YAML under ``files/`` so that a site can add a recipe by
dropping a file, review it in a diff, and never touch Python.  A recipe may
``extends:`` another (dicts merge, lists and scalars replace, ``null``
deletes) so the ten Ascend variants do not repeat their shared environment.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

from . import args as argmod
from .errors import LlmfleetError
from .paths import files_dir

WORKLOADS = {"throughput", "latency", "multimodal", "long-context", "prefix-cache"}
# hardware with no accelerator stack (the lab's cpu profile)
NO_VENDOR = "none"


@dataclass(frozen=True)
class Hardware:
    id: str
    description: str
    vendor: str
    arch: str
    devices_per_host: int
    device_memory_gb: float
    device_name: str
    nvswitch: bool = False
    cards_per_host: int | None = None
    gpu_name_patterns: tuple[str, ...] = ()
    images: dict[str, str] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)
    # what the nodes of a multi-node server on this hardware set so the collective library
    # uses the group's network (NCCL_SOCKET_IFNAME, HCCL_IF_IP, ...); see NETWORK_VALUES
    network_env: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Recipe:
    id: str
    title: str
    source: dict[str, str]
    hardware: str
    engine: str
    model: dict[str, Any]
    workload: tuple[str, ...]
    nodes: int
    launcher: tuple[str, ...]
    model_arg: str
    args: tuple[str, ...]
    deploy_defaults: dict[str, Any] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)
    unset_env: tuple[str, ...] = ()
    env_scripts: tuple[str, ...] = ()
    sysctl: dict[str, str] = field(default_factory=dict)
    cpu_governor: str | None = None
    container: dict[str, Any] | None = None
    benchmark: dict[str, Any] | None = None
    arg_overrides: dict[str, str] = field(default_factory=dict)
    runtime: str | None = None
    install: dict[str, Any] = field(default_factory=dict)
    # how a recipe with nodes > 1 spans them: one of MULTINODE_FORMS
    multinode_form: str = "nnodes"
    # ranks > 0 start with this launcher instead (empty: the same as rank 0's), for an
    # engine whose headless mode only one of its entry points honours
    worker_launcher: tuple[str, ...] = ()

    def flags(self) -> list[argmod.Flag]:
        """The engine flags, with the recipe's own ``arg_overrides`` applied."""
        flags = argmod.parse(argmod.split_lines(self.args))
        for name, value in self.arg_overrides.items():
            flags = argmod.set_flag(flags, name, argmod.split_lines([value]))
        return flags


@dataclass(frozen=True)
class Overlay:
    id: str
    description: str
    source: dict[str, str]
    engines: dict[str, dict[str, Any]]
    param: dict[str, Any] | None = None


class CatalogError(LlmfleetError):
    pass


# what an engine file (files/engines/<id>.yaml) must say; see vllm.yaml for each key's use
ENGINE_KEYS = {
    "host_flag": str,
    "port_flag": str,
    "served_name_flag": str,
    "parallel_flags": dict,
    "expert_parallel_flags": list,
    "dp_shards_weights_with_ep": bool,
    "dp_within_tp_flags": list,
    "memory_fraction_flags": list,
    "default_memory_fraction": float,
    "multinode": dict,
    "venv_launchers": list,
    "metrics": dict,
}
ENGINE_OPTIONAL = {"id", "api_key_env", "install", "multinode_dp", "network_env"}
MULTINODE_KEYS = {
    "nnodes",
    "node_rank",
    "master_addr",
    "worker_only",
    "master_port",
    "master_port_flag",
}
# what the engine's metrics table names (deploys/monitor.py, llmfleet top, the alert rules)
METRICS_KEYS = {"path", "flags", "running", "waiting", "kv_cache", "ttft", "generation_tokens"}
MULTINODE_DP_KEYS = {
    "size_local",
    "address",
    "rpc_port",
    "default_rpc_port",
    "start_rank",
    "worker_only",
}
# A multi-node recipe's form: "nnodes" runs one engine over the nodes (tensor/pipeline
# parallel: --nnodes/--node-rank/--master-addr); "data-parallel" runs each node's share of
# the DP ranks (the engine file's multinode_dp table).
MULTINODE_FORMS = ("nnodes", "data-parallel")
# What a network_env value may name: the host's network_interface, and its group address
# when that is an IP (variables such as VLLM_HOST_IP take nothing else).
NETWORK_VALUES = {"network_interface", "node_ip"}
PLACEHOLDER = re.compile(r"\{(\w+)\}")


def check_network_env(where: str, env: Any) -> None:
    """``network_env`` maps variable names to templates over ``NETWORK_VALUES`` only."""
    if not isinstance(env, dict):
        raise CatalogError(f"{where}: network_env must be a mapping")
    for name, template in env.items():
        unknown = set(PLACEHOLDER.findall(str(template))) - NETWORK_VALUES
        if unknown:
            raise CatalogError(
                f"{where}: network_env {name} names {sorted(unknown)}; "
                f"it may use {sorted(NETWORK_VALUES)}"
            )


def _check_engine(eid: str, doc: dict[str, Any]) -> None:
    """A new engine is a data file: say exactly what it lacks, not KeyError later."""
    where = f"files/engines/{eid}.yaml"
    missing = sorted(set(ENGINE_KEYS) - set(doc))
    unknown = sorted(set(doc) - set(ENGINE_KEYS) - ENGINE_OPTIONAL)
    if missing or unknown:
        raise CatalogError(f"{where}: missing keys {missing}, unknown keys {unknown}")
    for key, kind in ENGINE_KEYS.items():
        ok = isinstance(doc[key], (int, float)) if kind is float else isinstance(doc[key], kind)
        if not ok:
            raise CatalogError(f"{where}: {key} must be a {kind.__name__}")
    if set(doc["parallel_flags"]) != {"tp", "dp", "pp"}:
        raise CatalogError(f"{where}: parallel_flags needs exactly tp, dp and pp")
    if set(doc["multinode"]) != MULTINODE_KEYS:
        raise CatalogError(f"{where}: multinode needs exactly {sorted(MULTINODE_KEYS)}")
    if set(doc["metrics"]) != METRICS_KEYS or not isinstance(doc["metrics"]["flags"], list):
        raise CatalogError(f"{where}: metrics needs exactly {sorted(METRICS_KEYS)} (flags: a list)")
    dp = doc.get("multinode_dp")
    if dp is not None and (not isinstance(dp, dict) or set(dp) != MULTINODE_DP_KEYS):
        raise CatalogError(f"{where}: multinode_dp needs exactly {sorted(MULTINODE_DP_KEYS)}")
    check_network_env(where, doc.get("network_env") or {})


def _load_yaml_dir(path: Path) -> dict[str, dict[str, Any]]:
    docs: dict[str, dict[str, Any]] = {}
    for file in sorted(path.glob("*.yaml")):
        try:
            doc = yaml.safe_load(file.read_text())
        except yaml.YAMLError as exc:
            raise CatalogError(f"{file}: not valid YAML: {exc}") from exc
        if not isinstance(doc, dict) or "id" not in doc:
            raise CatalogError(f"{file}: expected a mapping with an 'id'")
        if doc["id"] != file.stem:
            raise CatalogError(f"{file}: id {doc['id']!r} must match the file name")
        docs[doc["id"]] = doc
    return docs


def deep_merge(base: dict[str, Any], top: dict[str, Any]) -> dict[str, Any]:
    """Dicts merge key by key; anything else replaces; ``None`` deletes."""
    out = dict(base)
    for key, value in top.items():
        if value is None:
            out.pop(key, None)
        elif isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def _resolve(rid: str, raw: dict[str, dict[str, Any]], seen: tuple[str, ...] = ()) -> dict:
    if rid in seen:
        raise CatalogError(f"recipe {rid}: 'extends' loops through {' -> '.join(seen)}")
    doc = raw[rid]
    parent = doc.get("extends")
    if parent is None:
        return dict(doc)
    if parent not in raw:
        raise CatalogError(f"recipe {rid}: extends unknown recipe {parent!r}")
    merged = deep_merge(_resolve(parent, raw, seen + (rid,)), doc)
    merged["abstract"] = bool(doc.get("abstract"))  # abstractness is never inherited
    return merged


_RECIPE_KEYS = set(Recipe.__dataclass_fields__) | {"extends", "abstract"}


def _to_recipe(doc: dict[str, Any], engines: dict[str, dict[str, Any]]) -> Recipe:
    rid = doc["id"]
    unknown = set(doc) - _RECIPE_KEYS
    if unknown:
        raise CatalogError(f"recipe {rid}: unknown keys {sorted(unknown)}")
    missing = [
        k
        for k in ("title", "source", "hardware", "engine", "model", "launcher", "model_arg", "args")
        if k not in doc
    ]
    if missing:
        raise CatalogError(f"recipe {rid}: missing {', '.join(missing)}")
    if doc["engine"] not in engines:
        raise CatalogError(
            f"recipe {rid}: engine {doc['engine']!r} not in {sorted(engines)} (files/engines/)"
        )
    bad = set(doc.get("workload", [])) - WORKLOADS
    if bad:
        raise CatalogError(f"recipe {rid}: unknown workload {sorted(bad)}; use {sorted(WORKLOADS)}")
    form = doc.get("multinode_form", MULTINODE_FORMS[0])
    if form not in MULTINODE_FORMS:
        raise CatalogError(f"recipe {rid}: multinode_form {form!r} is not one of {MULTINODE_FORMS}")
    if form == "data-parallel" and not engines[doc["engine"]].get("multinode_dp"):
        raise CatalogError(
            f"recipe {rid}: engine {doc['engine']} has no data-parallel multi-node form "
            f"(multinode_dp in files/engines/{doc['engine']}.yaml); use multinode_form: nnodes"
        )
    return Recipe(
        id=rid,
        title=doc["title"],
        source=doc["source"],
        hardware=doc["hardware"],
        engine=doc["engine"],
        model=doc["model"],
        workload=tuple(doc.get("workload", [])),
        nodes=int(doc.get("nodes", 1)),
        launcher=tuple(doc["launcher"]),
        model_arg=doc["model_arg"],
        args=tuple(doc["args"]),
        deploy_defaults=doc.get("deploy_defaults", {}),
        env={k: str(v) for k, v in (doc.get("env") or {}).items()},
        unset_env=tuple(doc.get("unset_env", [])),
        env_scripts=tuple(doc.get("env_scripts", [])),
        sysctl={k: str(v) for k, v in (doc.get("sysctl") or {}).items()},
        cpu_governor=doc.get("cpu_governor"),
        container=doc.get("container"),
        benchmark=doc.get("benchmark"),
        arg_overrides={k: str(v) for k, v in (doc.get("arg_overrides") or {}).items()},
        runtime=doc.get("runtime"),
        install=doc.get("install") or {},
        multinode_form=form,
        worker_launcher=tuple(doc.get("worker_launcher") or ()),
    )


class Catalog:
    """All recipes, hardware profiles, overlays, engine tables and model sizes."""

    def __init__(self, root: Path | None = None):
        self.root = root or files_dir()
        # one file per engine and per vendor stack: a new one is a data file
        self.engines: dict[str, dict[str, Any]] = _load_yaml_dir(self.root / "engines")
        for eid, doc in self.engines.items():
            _check_engine(eid, doc)
        self.vendors: set[str] = set(_load_yaml_dir(self.root / "stacks")) | {NO_VENDOR}
        raw = _load_yaml_dir(self.root / "recipes")
        resolved = {rid: _resolve(rid, raw) for rid in raw}
        self.recipes: dict[str, Recipe] = {
            rid: _to_recipe(doc, self.engines)
            for rid, doc in resolved.items()
            if not doc.get("abstract")
        }
        self.hardware: dict[str, Hardware] = {
            hid: Hardware(
                **{k: (tuple(v) if k == "gpu_name_patterns" else v) for k, v in doc.items()}
            )
            for hid, doc in _load_yaml_dir(self.root / "hardware").items()
        }
        self.overlays: dict[str, Overlay] = {
            oid: Overlay(**doc) for oid, doc in _load_yaml_dir(self.root / "overlays").items()
        }
        self.models: dict[str, dict[str, Any]] = yaml.safe_load(
            (self.root / "models.yaml").read_text()
        )
        self._check_references()

    def _check_references(self) -> None:
        for r in self.recipes.values():
            if r.hardware not in self.hardware:
                raise CatalogError(f"recipe {r.id}: unknown hardware {r.hardware!r}")
        for h in self.hardware.values():
            check_network_env(f"hardware {h.id}", h.network_env)
            if h.vendor not in self.vendors:
                raise CatalogError(
                    f"hardware {h.id}: vendor {h.vendor!r} not in {sorted(self.vendors)} "
                    "(files/stacks/)"
                )

    def recipe(self, rid: str) -> Recipe:
        return _lookup(self.recipes, rid, "recipe", "llmfleet recipes list")

    def hw(self, hid: str) -> Hardware:
        return _lookup(self.hardware, hid, "hardware profile", "files/hardware/")

    def overlay(self, oid: str) -> Overlay:
        return _lookup(self.overlays, oid, "overlay", "files/overlays/")

    def weights_gb(self, repo: str) -> float | None:
        info = self.models.get(repo)
        return float(info["weights_gb"]) if info else None

    def precision(self, repo: str) -> str:
        info = self.models.get(repo)
        return str(info["precision"]) if info else "unknown"


def _lookup(table: dict, key: str, what: str, where: str):
    if key in table:
        return table[key]
    close = difflib.get_close_matches(str(key), list(table), n=3, cutoff=0.5)
    hint = f"did you mean {', '.join(close)}?" if close else f"see {where}"
    raise CatalogError(f"unknown {what} {key!r}: {hint}")


@lru_cache(maxsize=4)
def load(root: str | None = None) -> Catalog:
    """The catalog is read once per process; tests pass their own root."""
    return Catalog(Path(root) if root else None)
