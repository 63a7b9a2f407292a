"""What a deployment chooses on top of a recipe: where and how it runs.

The same keys are accepted from ``--set KEY=VALUE`` on the command line and
from pyinfra host/group data, so what you try with ``recipes render`` is
exactly what the inventory will deploy.  Unknown keys are errors: a typo in
an override must never be silently ignored.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

from .errors import Problem, ValidationError

# Deployment-level keys; flag./env./overlay. prefixed keys are handled apart.
SCALAR_KEYS = {
    "model_path": "weights directory or repo id the engine loads (default: the recipe's repo)",
    "bind": "address the engine binds (default: the recipe's, usually 0.0.0.0)",
    "port": "TCP port the engine listens on",
    "served_name": "model name clients send (--served-model-name)",
    "revision": "model revision (branch, tag or commit) to pull",
    "image": "container image for the docker runtime",
    "runtime": "venv (pinned Python environment) or docker (pinned image)",
    "model_repo": "Hub repo of the weights instead of the recipe's (same architecture)",
    "venv": "path of the engine's Python environment on the host",
    "hf_home": "Hugging Face cache directory on the host",
    "master_addr": "address of rank 0 for multi-node recipes",
    "dist_port": "rendezvous port for SGLang --dist-init-addr",
    "node_rank": "this host's rank in a multi-node recipe",
    "network_interface": "NIC name for HCCL/Gloo (Ascend recipes)",
}
PREFIXES = {
    "flag.": "set an engine flag: flag.--max-model-len=4096; 'true' = bare switch, 'false' = drop",
    "env.": "set an environment variable in the unit's environment file",
    "overlay.": "apply an overlay: overlay.tool-calling=true, overlay.mtp-tokens=3",
}


def override_items(data: dict[str, Any]) -> dict[str, Any]:
    """The deployment keys and flag./env./overlay. overrides in flat host data."""
    keys = set(SCALAR_KEYS) | {"flags", "env", "overlays"}
    return {
        k: v
        for k, v in data.items()
        if v is not None and (k in keys or k.startswith(tuple(PREFIXES)))
    }


@dataclass
class Deployment:
    host_name: str = "-"
    model_path: str | None = None
    model_repo: str | None = None
    bind: str | None = None
    port: int | None = None
    served_name: str | None = None
    revision: str | None = None
    image: str | None = None
    runtime: str | None = None
    venv: str = "/opt/llmfleet/venv"
    hf_home: str = "/var/lib/llmfleet/hf"
    master_addr: str | None = None
    dist_port: int | None = None
    node_rank: int = 0
    network_interface: str | None = None
    flags: dict[str, str] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)
    overlays: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_host_data(cls, data: dict[str, Any], host_name: str) -> Deployment:
        """Pick the deployment keys out of flat pyinfra host data (other keys are pyinfra's)."""
        return cls.from_mapping(override_items(data), host_name)

    @classmethod
    def from_mapping(cls, data: dict[str, Any], host_name: str = "-") -> Deployment:
        """Build from ``{key: value}`` with dotted or nested flag/env/overlay keys."""
        dep = cls(host_name=host_name)
        problems: list[Problem] = []
        for key, value in data.items():
            problems.extend(dep._apply(key, value))
        if problems:
            raise ValidationError(problems)
        return dep

    def _apply(self, key: str, value: Any) -> list[Problem]:
        for prefix, attr in (("flag.", "flags"), ("env.", "env"), ("overlay.", "overlays")):
            if key.startswith(prefix):
                getattr(self, attr)[key[len(prefix) :]] = _text(value)
                return []
        if key in ("flags", "env", "overlays") and isinstance(value, (dict, list)):
            items = value.items() if isinstance(value, dict) else ((v, "true") for v in value)
            getattr(self, key).update({str(k): _text(v) for k, v in items})
            return []
        if key not in SCALAR_KEYS:
            return [
                Problem(
                    self.host_name,
                    key,
                    "unknown override key",
                    fix=f"use one of {', '.join(sorted(SCALAR_KEYS))} or a "
                    f"{'/'.join(PREFIXES)} prefixed key",
                )
            ]
        kind = {f.name: f.type for f in fields(self)}[key]
        if "int" in str(kind) and value is not None:
            try:
                value = int(value)
            except (TypeError, ValueError):
                return [Problem(self.host_name, key, f"{value!r} is not a number")]
        setattr(self, key, value)
        return []


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def parse_sets(pairs: list[str], host_name: str = "-") -> dict[str, str]:
    """``["port=8001", "flag.--x=1"]`` -> dict; a pair without '=' is an error."""
    out: dict[str, str] = {}
    for pair in pairs:
        key, eq, value = pair.partition("=")
        if not eq or not key:
            raise ValidationError(
                [Problem(host_name, pair, "expected KEY=VALUE", fix="e.g. --set port=8001")]
            )
        out[key.strip()] = value
    return out
