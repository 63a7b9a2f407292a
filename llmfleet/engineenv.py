"""What goes into an engine's Python environment, and where it lives on the host.

Pure data, decided in the plan: the recipe's pins (or the engine's
defaults), the packages a recipe must leave out, and where packages come
from.  The environment's path is a hash of all of it, so a new pin builds
beside the old one (rollback needs no reinstall) and an unchanged pin is a
no-op.  ``roles/engine.py`` and ``roles/pyenvs.py`` apply it.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field

from .catalog import Catalog, Recipe
from .hostpaths import ENGINES_DIR
from .settings import Settings


@dataclass(frozen=True)
class PackageSource:
    """Where packages come from: ``engine_find_links`` (a wheelhouse, no index),
    ``engine_index_url``, ``engine_excludes`` (a requirements file of packages to
    keep out) and ``uv_url``/``uv_requirement`` for uv itself."""

    find_links: str | None = None
    index_url: str | None = None
    excludes: str | None = None
    uv_url: str | None = None
    uv: str = "uv"

    @classmethod
    def from_settings(cls, s: Settings) -> PackageSource:
        return cls(
            find_links=s.engine_find_links,
            index_url=s.engine_index_url,
            excludes=s.engine_excludes,
            uv_url=s.uv_url,
            uv=s.uv_requirement,
        )

    def args(self) -> list[str]:
        if self.find_links:
            return ["--no-index", "--find-links", self.find_links]
        if self.index_url:
            return ["--index-url", self.index_url]
        return []


@dataclass(frozen=True)
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


def engine_spec(catalog: Catalog, recipe: Recipe, s: Settings) -> EngineSpec:
    """Recipe pins, then engine defaults; the settings may name a site index/wheelhouse."""
    defaults = catalog.engines[recipe.engine].get("install", {})
    install = {**defaults, **recipe.install}
    return EngineSpec(
        packages=list(s.engine_packages or install.get("packages") or []),
        remove=list(install.get("remove", [])),
        system_packages=list(install.get("system_packages", [])),
        python=install.get("python", "python3"),
        source=PackageSource.from_settings(s),
    )


def venv_path(recipe: Recipe, spec: EngineSpec, s: Settings) -> str:
    """``venv`` when set, else a path named for the engine and the hash of its pins."""
    return s.venv or f"{ENGINES_DIR}/{recipe.engine}-{spec.key}"
