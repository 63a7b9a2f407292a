"""Engine role: a pinned Python environment (built with uv) or a pinned image.

The environment's path is derived from a hash of what goes into it, so a new
pin builds beside the old one (rollback needs no reinstall) and an unchanged
pin is a no-op (see ``roles/pyenvs.py`` for how environments are built).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field

from pyinfra import host
from pyinfra.api import deploy
from pyinfra.api.operation import OperationMeta
from pyinfra.facts.deb import DebPackages
from pyinfra.operations import apt

from llmfleet.catalog import Catalog, Recipe

from .pyenvs import PackageSource, ensure_venv

ENGINES_DIR = "/opt/llmfleet/engines"


@dataclass
class EngineSpec:
    """Everything that decides what goes into an engine environment (hashed into its path)."""

    packages: list[str]
    remove: list[str] = field(default_factory=list)
    system_packages: list[str] = field(default_factory=list)
    python: str = "python3"
    source: PackageSource = field(default_factory=PackageSource)

    @property
    def key(self) -> str:
        body = json.dumps(asdict(self), sort_keys=True)
        return hashlib.sha256(body.encode()).hexdigest()[:12]


def engine_spec(catalog: Catalog, recipe: Recipe, data: dict) -> EngineSpec:
    """Recipe pins, then engine defaults; host data may point at a site index/wheelhouse."""
    defaults = catalog.engines[recipe.engine].get("install", {})
    install = {**defaults, **recipe.install}
    return EngineSpec(
        packages=list(data.get("engine_packages") or install.get("packages") or []),
        remove=list(install.get("remove", [])),
        system_packages=list(install.get("system_packages", [])),
        python=install.get("python", "python3"),
        source=PackageSource.from_data(data),
    )


def venv_path(recipe: Recipe, spec: EngineSpec) -> str:
    return f"{ENGINES_DIR}/{recipe.engine}-{spec.key}"


@deploy("Engine environment")
def engine_env(spec: EngineSpec, venv: str, ops: list[OperationMeta]) -> None:
    installed = host.get_fact(DebPackages) if spec.system_packages else {}
    missing = [p for p in spec.system_packages if p not in installed]
    if missing:  # refresh the apt lists only when there is something to install
        ops.append(
            apt.packages(
                name=f"System packages the engine loads: {' '.join(missing)}",
                packages=missing,
                update=True,
                cache_time=3600,
            )
        )
    ensure_venv(
        "Engine",
        venv,
        spec.packages,
        spec.source,
        ops,
        python=spec.python,
        leave_out=spec.remove,
        parent=ENGINES_DIR,
    )
