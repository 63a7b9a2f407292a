"""Preflight: is each host what its inventory entry says, and ready to serve? Read-only.

    pyinfra inventories/lambda.py deploys/preflight.py
    pyinfra @local deploys/preflight.py --data hardware=h200 [--data recipe=...]

Per host: gathers facts (OS, kernel, CPU/NUMA, cpufreq, scheduler knobs, free
disk at ``hf_home``, GPUs/NPUs through nvidia-smi, amd-smi/rocm-smi or
npu-smi, NVLink topology, fabric manager), prints a readiness table and the
hardware profile and recipes that fit what was found, and fails the host
(changing nothing on it) when it does not match its inventory entry.  A host
without ``hardware`` is probed all the same and fails with the profile its
devices match as the fix ("no hardware set; the devices match profile h200
(8 x NVIDIA H200): set hardware=h200").
"""

from pyinfra import host
from rich.console import Console
from rich.table import Table

from llmfleet.catalog import load
from llmfleet.errors import Problem
from llmfleet.hostfacts.system import HostFacts
from llmfleet.readiness import Readiness, assess
from llmfleet.settings import Settings
from roles.hostfacts import DEVICE_FACTS, FabricManager, HostBasics, NvidiaTopology
from roles.plan import fail_host, settings_only

_STYLE = {"ok": "green", "warn": "yellow", "fail": "red", "info": "dim"}


def gather(hf_home: str) -> HostFacts:
    """All facts, one round trip each; vendors whose tool is missing come back None."""
    facts: HostFacts = host.get_fact(HostBasics, path=hf_home)
    seen = {vendor: host.get_fact(fact) for vendor, fact in DEVICE_FACTS.items()}
    nvidia = seen.get("nvidia")
    found = [a for a in seen.values() if a]
    facts.accelerators = next((a for a in found if a.count), found[0] if found else None)
    if nvidia is not None:
        facts.topology = host.get_fact(NvidiaTopology)
        facts.fabric_manager = host.get_fact(FabricManager)
    return facts


def show(report: Readiness, hardware: str | None, recipe: str | None) -> None:
    title = f"preflight {report.host}: inventory hardware={hardware or '-'} recipe={recipe or '-'}"
    table = Table(title=title, title_justify="left")
    for col in ("check", "status", "detail"):
        table.add_column(col, overflow="fold")
    for row in report.rows:
        style = _STYLE.get(row.status, "")
        table.add_row(row.check, f"[{style}]{row.status}[/{style}]", row.detail)
    console = Console()
    if not console.is_terminal:  # logs and saved reports: do not fold at 80 columns
        console.width = max(console.width, 160)
    console.print(table)
    console.print(f"  detected profile: {report.detected or 'none of the catalog profiles'}")
    console.print(f"  recipes that fit: {', '.join(report.recipes) or 'none'}")
    for problem in report.problems:
        if problem.fix:
            console.print(f"  fix {problem.field}: {problem.fix}")


def preflight(s: Settings) -> None:
    hardware, recipe, hf_home = s.hardware, s.recipe, s.hf_home
    facts = gather(hf_home)
    report = assess(load(), host.name, facts, hardware, recipe, hf_home=hf_home)
    show(report, hardware, recipe)
    errors = [p for p in report.problems if p.severity == "error"]
    if errors:
        fail_host("preflight: " + "; ".join(_with_fix(p) for p in errors))


def _with_fix(problem: Problem) -> str:
    text = f"{problem.field}: {problem.message}"
    return f"{text}: {problem.fix}" if problem.fix else text


_settings = settings_only()
if _settings is not None:
    preflight(_settings)
