"""After the install: what the host has (one probe, ``state_command``, read back by
``parse_state``), what is still missing, whether to reboot, and the verify
step's list of what is wrong, each line naming the setting and a fix."""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field
from typing import Any

from ..hostfacts.devices import DEVICE_TOOLS, Accelerators
from ..hostfacts.framing import SECTION_MARK, split_sections
from .plan import Installer, Package, StackPlan


@dataclass(frozen=True)
class Installed:
    """What the host has, read after the install: package versions, holds, unit
    states, installer versions and env scripts present."""

    packages: dict[str, str] = field(default_factory=dict)
    holds: frozenset[str] = frozenset()
    services: dict[str, str] = field(default_factory=dict)
    installers: dict[str, str] = field(default_factory=dict)  # component -> installed-file text
    files: frozenset[str] = frozenset()


def state_command(
    packages: tuple[str, ...],
    services: tuple[str, ...],
    installed: tuple[tuple[str, str], ...],
    paths: tuple[str, ...],
) -> str:
    """A shell script printing what ``parse_state`` reads, framed like host.txt
    (``=== $ NAME`` headers).  Every probe tolerates absence: a bare host is
    described, not failed."""
    q = shlex.quote
    parts = [
        f"echo {q(SECTION_MARK + 'packages')}",
        "dpkg-query -W -f '${db:Status-Abbrev} ${Package} ${Version}\\n' "
        + " ".join(map(q, packages))
        + " 2>/dev/null | awk '$1 ~ /^.i/ {print $2, $3}'"  # ii or hi (held): installed
        if packages
        else "true",
        f"echo {q(SECTION_MARK + 'holds')}",
        "apt-mark showhold 2>/dev/null",
        f"echo {q(SECTION_MARK + 'container')}",
        "systemd-detect-virt --container 2>/dev/null",
    ]
    for unit in services:
        parts += [f"echo {q(SECTION_MARK + 'service ' + unit)}", f"systemctl is-active {q(unit)}"]
    for component, path in installed:
        parts += [
            f"echo {q(SECTION_MARK + 'installer ' + component)}",
            f"cat {q(path)} 2>/dev/null",
        ]
    for path in paths:
        parts += [f"echo {q(SECTION_MARK + 'file')}", f"test -e {q(path)} && echo {q(path)}"]
    return "; ".join(parts) + "; true"


def parse_state(output: list[str]) -> dict[str, Any]:
    """``{"installed": Installed, "container": name or None}`` from ``state_command``."""
    sections = {
        name: [ln.strip() for ln in text.splitlines()]
        for name, text in split_sections("\n".join(output)).items()
    }
    services = {
        name.split(" ", 1)[1]: (lines or ["unknown"])[0]
        for name, lines in sections.items()
        if name.startswith("service ")
    }
    installers = {
        name.split(" ", 1)[1]: "\n".join(lines)
        for name, lines in sections.items()
        if name.startswith("installer ")
    }
    packages = dict(ln.split(" ", 1) for ln in sections.get("packages", []) if " " in ln)
    container = (sections.get("container") or ["none"])[0] or "none"
    return {
        "installed": Installed(
            packages=packages,
            holds=frozenset(ln for ln in sections.get("holds", []) if ln),
            services=services,
            installers=installers,
            files=frozenset(ln for ln in sections.get("file", []) if ln),
        ),
        "container": None if container == "none" else container,
    }


def env_script_paths(plan: StackPlan, recipe_scripts: tuple[str, ...] = ()) -> tuple[str, ...]:
    """The env scripts that must exist: the stack's, then the recipe's (once each)."""
    return tuple(dict.fromkeys((*plan.env_scripts, *recipe_scripts)))


def missing_packages(plan: StackPlan, have: dict[str, str]) -> list[Package]:
    """Packages absent or at another version than pinned."""
    return [
        p
        for p in plan.packages
        if p.name not in have or (p.version is not None and have[p.name] != p.version)
    ]


def pending_installers(plan: StackPlan, have: dict[str, str]) -> list[Installer]:
    """Installers whose version is not (yet) what their ``installed`` file names."""
    return [i for i in plan.installers if i.version not in have.get(i.component, "")]


def reboot_decision(kernel: list[str], container: str | None, policy: str) -> tuple[bool, str]:
    """Reboot when a kernel module package or installer changed (the new driver is
    not loaded until then: "driver/library version mismatch"), unless the host is
    a container (its kernel is the machine's) or ``stack_reboot`` is ``never``.
    ``always`` reboots containers too: booted system containers can, and the lab
    uses it to run the reboot-and-wait path (it loads no module there)."""
    if not kernel:
        return False, "not needed"
    what = ", ".join(kernel)
    if container and policy != "always":
        return False, f"needed for {what}; skipped: {container} container shares the host's kernel"
    if policy == "never":
        return False, f"needed for {what}; skipped: stack_reboot=never"
    return True, f"reboot for {what}"


def verify(
    plan: StackPlan,
    installed: Installed,
    acc: Accelerators | None,
    fabric_manager_version: str | None = None,
    env_scripts: tuple[str, ...] = (),
) -> list[str]:
    """What is wrong after the install, each line naming the setting and a fix."""
    problems = [
        f"package {p.spec}: installed {installed.packages.get(p.name) or 'nothing'}"
        for p in missing_packages(plan, installed.packages)
    ]
    problems += [
        f"package {h}: not held (apt-mark hold {h})" for h in plan.holds if h not in installed.holds
    ]
    problems += [
        f"service {s}: {installed.services.get(s) or 'unknown'} (journalctl -u {s})"
        for s in plan.services
        if installed.services.get(s) != "active"
    ]
    problems += [
        f"installer {i.file}: {i.version} not installed ({i.installed})"
        for i in pending_installers(plan, installed.installers)
    ]
    problems += [
        f"env script {path}: missing (the recipe sources it; check which CANN layout "
        "this release uses, e.g. /usr/local/Ascend/cann/set_env.sh)"
        for path in env_script_paths(plan, env_scripts)
        if path not in installed.files
    ]
    tool = DEVICE_TOOLS[plan.stack]
    if acc is None or not acc.count:
        problems.append(f"devices: {tool} lists none (driver not loaded? reboot after it)")
    else:
        if acc.count < plan.expected_devices:
            problems.append(
                f"devices: {tool} sees {acc.count}, expected {plan.expected_devices} "
                "(devices_per_host)"
            )
        if plan.stack == "nvidia" and acc.driver_version != plan.driver_version:
            problems.append(
                f"driver: running {acc.driver_version}, pinned {plan.driver_version} "
                "(reboot to load the new driver)"
            )
        off = [str(d.index) for d in acc.devices if d.persistence_mode is False]
        if plan.stack == "nvidia" and off:
            problems.append(
                f"persistence mode: off on GPU {', '.join(off)} (nvidia-persistenced running?)"
            )
    if "nvidia-fabricmanager" in plan.services and fabric_manager_version != plan.driver_version:
        problems.append(
            f"fabric manager: version {fabric_manager_version or 'unknown'}, must equal the "
            f"driver {plan.driver_version}"
        )
    return problems
