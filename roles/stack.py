"""Accelerator stack role: vendor apt repositories and pinned, held packages
(NVIDIA, ROCm) or checksummed .run installers (Ascend), then services, groups,
a reboot when a kernel module changed, and a verify step that fails the host
with what is wrong.

The plan comes from ``llmfleet.stacks`` (data in ``files/stacks/``); this role
only applies it.  Why each habit:

- one fact (``StackState``) reads everything the role and the verify step
  need in one round trip: package versions, holds, unit states, installer
  version files, env scripts, container or not;
- ``apt-get update`` reads only our sources files: a host whose distro mirror
  is unreachable (air-gapped sites, the lab) still installs from the vendor
  repository, and the update runs only when something is to be installed;
- packages are installed at their pinned versions and held, and installs pass
  ``--allow-change-held-packages`` so a changed pin moves a held package on
  purpose while an unattended upgrade cannot;
- a changed kernel module means a reboot (``stack_reboot: auto``) except in a
  container, where the kernel is the host's: then it is reported instead.
"""

from __future__ import annotations

import io
import shlex
from typing import Any

from pyinfra import host
from pyinfra.api import FactBase, deploy
from pyinfra.operations import apt, files, python, server, systemd

from llmfleet.catalog import NO_VENDOR
from llmfleet.hostfacts.system import HostFacts
from llmfleet.stacks.plan import (
    INSTALLER_CACHE,
    AptRepo,
    Installer,
    StackError,
    StackPlan,
    load_stack,
    plan_stack,
)
from llmfleet.stacks.verify import (
    Installed,
    env_script_paths,
    missing_packages,
    parse_state,
    pending_installers,
    reboot_decision,
    state_command,
    verify,
)

from . import summary
from .hostfacts import DEVICE_FACTS, FabricManager, HostBasics
from .plan import fail_host
from .reboot import reboot_and_wait


class StackState(FactBase):
    """Installed versions, holds, unit states, installer version files, present env
    scripts and container or not, in one round trip (``llmfleet.stacks``)."""

    def command(
        self,
        packages: tuple[str, ...],
        services: tuple[str, ...],
        installed: tuple[tuple[str, str], ...],
        paths: tuple[str, ...],
    ) -> str:
        return state_command(packages, services, installed, paths)

    def process(self, output: list[str]) -> dict[str, Any]:
        return parse_state(output)


def _state(plan: StackPlan, env_scripts: tuple[str, ...]) -> dict[str, Any]:
    return host.get_fact(
        StackState,
        packages=tuple(p.name for p in plan.packages),
        services=plan.services,
        installed=tuple((i.component, i.installed) for i in plan.installers),
        paths=env_script_paths(plan, env_scripts),
    )


def _update_command(repos: tuple[AptRepo, ...]) -> str:
    """``apt-get update`` of our sources files only (other lists are kept)."""
    return " && ".join(
        "apt-get update -qq -o Dir::Etc::SourceParts=/nonexistent "
        f"-o Dir::Etc::SourceList={shlex.quote(r.sources_file)} -o APT::Get::List-Cleanup=0"
        for r in repos
    )


def _repos(plan: StackPlan) -> list:
    ops = []
    for repo in plan.repos:
        ops.append(
            files.download(
                name=f"{repo.name}: signing key",
                src=repo.key_url,
                dest=repo.keyring,
                mode="644",
            )
        )
        ops.append(
            apt.sources_file(
                name=f"{repo.name}: apt source",
                filename=f"llmfleet-{repo.name}",
                uris=[repo.uri],
                suites=[repo.suite],
                components=list(repo.components),
                signed_by=repo.keyring,
            )
        )
        if repo.pin_priority:
            pin = f"Package: *\nPin: origin {repo.origin_host}\nPin-Priority: {repo.pin_priority}\n"
            ops.append(
                files.put(
                    name=f"{repo.name}: apt pin {repo.pin_priority}",
                    src=io.StringIO(pin),
                    dest=f"/etc/apt/preferences.d/llmfleet-{repo.name}.pref",
                    mode="644",
                )
            )
    return ops


def _installers(pending: list[Installer]) -> None:
    files.directory(name="Installer cache", path=INSTALLER_CACHE, mode="700")
    for inst in pending:
        files.download(
            name=f"{inst.component}: download {inst.file} (sha256 pinned)",
            src=inst.url,
            dest=inst.path,
            sha256sum=inst.sha256,
            mode="700",
        )
        server.shell(
            name=f"{inst.component}: install {inst.version}",
            commands=[
                f"sha256sum -c - <<< {shlex.quote(inst.sha256 + '  ' + inst.path)} >/dev/null"
                f" && bash {shlex.quote(inst.path)} {' '.join(map(shlex.quote, inst.args))}"
            ],
            _shell_executable="bash",
        )


@deploy("Accelerator stack")
def accelerator_stack(plan: StackPlan, env_scripts: tuple[str, ...], reboot: str) -> None:
    before = _state(plan, env_scripts)
    have: Installed = before["installed"]
    missing = missing_packages(plan, have.packages)
    pending = pending_installers(plan, have.installers)
    repo_ops = _repos(plan)
    if plan.repos:
        server.shell(
            name="apt update (vendor repositories only)",
            commands=[_update_command(plan.repos)],
            _if=(lambda: True) if missing else (lambda: any(op.did_change() for op in repo_ops)),
        )
    distro = [p for p in missing if p.distro]
    if distro:  # only when missing: the full update would count as a change every run
        apt.packages(
            name=f"{plan.stack}: from the distribution: {', '.join(p.name for p in distro)}",
            packages=[p.spec for p in distro],
            update=True,
            no_recommends=True,
        )
    if plan.holds:
        apt.packages(
            name=f"{plan.stack}: pinned packages",
            packages=[p.spec for p in plan.packages if not p.distro],
            no_recommends=True,
            extra_install_args="--allow-change-held-packages --allow-downgrades",
        )
        unheld = [p for p in plan.holds if p not in have.holds]
        if unheld:
            server.shell(
                name=f"{plan.stack}: hold {', '.join(unheld)}",
                commands=["apt-mark hold " + " ".join(map(shlex.quote, unheld))],
            )
    if pending:
        _installers(pending)
    for group in plan.groups:
        server.group(name=f"group {group}", group=group, system=True)
    for unit in plan.services:
        systemd.service(
            name=f"{unit} enabled and running", service=unit, running=True, enabled=True
        )
    kernel = [p.name for p in missing if p.kernel_module] + [
        i.file for i in pending if i.kernel_module
    ]
    reboot_note = _reboot(kernel, before["container"], reboot)
    summary.note_stack(
        host.name,
        {
            "stack": plan.stack,
            "driver": plan.driver_version,
            "installs": ", ".join([p.spec for p in missing] + [i.file for i in pending]) or "-",
            "reboot": reboot_note,
        },
    )
    already, text = _check(plan, env_scripts, have)
    if already:  # something to fix: check again once the operations above have run
        python.call(
            name=f"Verify the {plan.stack} stack",
            function=_verify,
            plan=plan,
            env_scripts=env_scripts,
        )
    else:  # nothing to do and nothing wrong: a re-run reports no change at all
        summary.note_stack(host.name, {"verify": text})


def _reboot(kernel: list[str], container: str | None, policy: str) -> str:
    reboot, note = reboot_decision(kernel, container, policy)
    if reboot:
        reboot_and_wait(name=f"Reboot: kernel module changed ({', '.join(kernel)})")
    return note


def _check(plan: StackPlan, env_scripts: tuple[str, ...], have: Installed) -> tuple[list[str], str]:
    """The verify problems and the summary's verify text (one read of the devices)."""
    acc = host.get_fact(DEVICE_FACTS[plan.stack])
    fm = host.get_fact(FabricManager).version if "nvidia-fabricmanager" in plan.services else None
    problems = verify(plan, have, acc, fm, env_scripts)
    ok = f"ok: {acc.count} x {' + '.join(acc.names)}" if acc and acc.count else "ok"
    return problems, "; ".join(problems) or ok


def _verify(plan: StackPlan, env_scripts: tuple[str, ...]) -> None:
    problems, text = _check(plan, env_scripts, _state(plan, env_scripts)["installed"])
    summary.note_stack(host.name, {"verify": text})
    if problems:
        raise RuntimeError(f"{host.name}: {plan.stack} stack: " + "; ".join(problems))


def stack_from_data(plan: Any) -> None:
    """The role for an onboarding plan: the stack named by ``accelerator_stack``
    (default: the hardware profile's vendor; ``none`` skips), and the recipe's
    env scripts as files the verify step must find.  A stack that cannot be
    planned fails the host before anything is touched."""
    settings = plan.settings
    vendor = settings.accelerator_stack or plan.hardware.vendor
    if vendor == NO_VENDOR:
        summary.note_stack(host.name, {"stack": "none", "verify": "skipped (no stack)"})
        return
    recipe = plan.recipe
    runtime = (recipe.runtime or ("docker" if recipe.container else "venv")) if recipe else "venv"
    reboot = settings.stack_reboot  # one of settings.REBOOT_POLICIES: checked in the plan
    try:
        facts: HostFacts = host.get_fact(HostBasics, path="/")
        stack_plan = plan_stack(
            host.name,
            load_stack(vendor),
            facts,
            hardware=plan.hardware,
            runtime=runtime,
            settings=settings,
        )
    except StackError as exc:
        summary.note_stack(host.name, {"stack": vendor, "verify": str(exc)})
        fail_host(str(exc))
        return
    accelerator_stack(stack_plan, tuple(recipe.env_scripts) if recipe else (), reboot)
