"""Engine role: build the plan's pinned Python environment (with uv) where it says.

What goes in and the path (a hash of the pins) are decided in the plan
(``llmfleet/engineenv.py``): a new pin builds beside the old one (rollback
needs no reinstall) and an unchanged pin is a no-op (see ``roles/pyenvs.py``
for how environments are built).
"""

from __future__ import annotations

from pyinfra import host
from pyinfra.api import deploy
from pyinfra.api.operation import OperationMeta
from pyinfra.facts.deb import DebPackages
from pyinfra.operations import apt

from llmfleet.engineenv import EngineSpec
from llmfleet.hostpaths import ENGINES_DIR

from .pyenvs import ensure_venv


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
