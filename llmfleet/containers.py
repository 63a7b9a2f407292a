"""The container engine a docker recipe needs on its host, decided in the plan.

Data in ``files/runtimes/docker.yaml`` (package, pinned versions per distro,
daemon settings) plus the host's settings (version override, data root, log
rotation, insecure registries) give one ``ContainerPlan``: the package
version to install and hold and the exact ``/etc/docker/daemon.json``.
``roles/container.py`` applies it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

from .paths import files_dir
from .settings import Settings


@lru_cache(maxsize=1)
def runtime_doc(root: str | None = None) -> dict[str, Any]:
    return yaml.safe_load((Path(root or files_dir()) / "runtimes" / "docker.yaml").read_text())


@dataclass(frozen=True)
class ContainerPlan:
    package: str
    version: str | None  # None: the candidate at first install, then held
    daemon_json: str
    service: str
    binary: str


def container_plan(
    s: Settings, distro: str | None, doc: dict[str, Any] | None = None
) -> ContainerPlan:
    doc = doc or runtime_doc()
    daemon: dict[str, Any] = {
        **doc.get("daemon", {}),
        "log-opts": {"max-size": s.docker_log_max_size, "max-file": str(s.docker_log_max_file)},
    }
    if s.docker_data_root:
        daemon["data-root"] = s.docker_data_root
    if s.insecure_registries:
        daemon["insecure-registries"] = sorted(set(s.insecure_registries))
    return ContainerPlan(
        package=doc["package"],
        version=s.docker_version or doc.get("versions", {}).get(distro or ""),
        daemon_json=json.dumps(daemon, indent=2, sort_keys=True) + "\n",
        service=doc["service"],
        binary=doc["binary"],
    )
