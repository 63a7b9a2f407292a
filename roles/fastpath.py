"""The serve deploy's no-change check: one SSH round trip instead of ~35.

Before the serve roles queue anything, every fact a no-op run would read is read
at once (``llmfleet/factbatch.py``: the facts' own commands in one script) and
compared with the plan (``llmfleet/servecheck.py``).  A host already exactly at
its plan gets no operation at all and is reported as the quiet run always
reported it ("already serving (no change, not restarted)"); any other host takes
the full deploy unchanged, paying one extra command for the check.
"""

from __future__ import annotations

from dataclasses import asdict

from pyinfra import host
from pyinfra.api import FactBase

from llmfleet.factbatch import batch_command, python_batch, split_output
from llmfleet.hostpaths import RELEASES, UNIT_NAME
from llmfleet.hostpaths import weights_marker as snapshot_marker
from llmfleet.manifest import LIST_PY
from llmfleet.probe import models_code
from llmfleet.servecheck import (
    Seen,
    account_program,
    eligible,
    marker_command,
    packages_command,
    parse_account,
    parse_packages,
    parse_paths,
    parse_unit,
    paths_program,
    stale,
    unit_command,
    uv_command,
    want_of,
)
from llmfleet.serveplan import ServePlan

from .facts import PortListeners, ServedModels
from .health import SCRIPTS
from .pyenvs import marker_text
from .release import Releases
from .run import record
from .weights import SCRIPT, SnapshotState


class FactBatch(FactBase):
    """``{name: (exit status, lines)}`` of several commands run in one SSH command."""

    def command(self, sections: tuple[tuple[str, str], ...]) -> str:
        return batch_command(dict(sections))

    def process(self, output: list[str]) -> dict[str, tuple[int, list[str]]]:
        return split_output(output)

    def default(self) -> dict:
        return {}


def _fact(cls: type[FactBase], found: tuple[int, list[str]] | None):
    """A fact's value from its batched output, as ``host.get_fact`` would give it."""
    fact = cls()
    if found is None or found[0] != 0:
        return fact.default()
    return fact.process(found[1])


def unchanged(plan: ServePlan) -> bool:
    """True when the host already is exactly the plan (then nothing is queued for it
    and the record says what the probe saw); False: take the full deploy."""
    if not eligible(plan):
        return False
    spec, w = plan.engine, plan.weights
    venv_marker = marker_text(
        packages=spec.packages,
        python=spec.python,
        leave_out=spec.remove,
        source=asdict(spec.source),
    )
    want = want_of(plan, venv_marker, (SCRIPTS / "llmfleet-health.py").read_bytes())
    key_env = plan.manifest.api_key_env
    marker = snapshot_marker(w.hf_home, w.repo, w.commit)
    hashes = ["--hashes"] if w.verify else []
    sections = {
        "port": PortListeners().command(
            port=want.port, unit=f"{UNIT_NAME}.service", container=None
        ),
        "uv": uv_command(),
        "venv": marker_command(want.venv_marker_path),
        "packages": packages_command(want.system_packages),
        "unit": unit_command(),
        # the Python probes (snapshot, releases, served models, files, account): one interpreter
        "py": python_batch(
            {
                "snapshot": (
                    SCRIPT.read_text(),
                    ["llmfleet-fetch", "check", "--marker", marker, *hashes],
                ),
                "releases": (LIST_PY, ["llmfleet-releases", RELEASES]),
                "models": (models_code(want.port, key_env), ["llmfleet-models"]),
                "paths": paths_program(want.paths),
                "account": account_program(want.user),
            }
        ),
    }
    out = host.get_fact(FactBatch, sections=tuple(sections.items()))
    passwd, group = parse_account(out.get("account", (1, []))[1])
    active, enabled = parse_unit(out.get("unit", (1, []))[1])
    seen = Seen(
        listeners=_fact(PortListeners, out.get("port")) if "port" in out else None,
        uv=out.get("uv", (1, []))[1] == ["yes"],
        venv_marker="\n".join(out.get("venv", (1, []))[1]),
        packages=parse_packages(out.get("packages", (1, []))[1]),
        snapshot=_fact(SnapshotState, out.get("snapshot")),
        releases=_fact(Releases, out.get("releases")),
        paths=parse_paths(out.get("paths", (1, []))[1]),
        passwd=passwd,
        group=group,
        active=active,
        enabled=enabled,
        models=_fact(ServedModels, out.get("models")),
    )
    why = stale(want, seen)
    if why:
        more = f" (and {len(why) - 3} more)" if len(why) > 3 else ""
        print(f"    [{host.name}] full deploy: {'; '.join(why[:3])}{more}")
        return False
    record(host.name).health = {"ok": True, "probe": True, "models": seen.models}
    return True
