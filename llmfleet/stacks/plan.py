"""Planning an accelerator stack (NVIDIA, ROCm, Ascend CANN) for one host.

The pins live in ``files/stacks/<vendor>.yaml``; this module turns one of
them plus what the host is (distro, arch, hardware profile, runtime) into a
concrete plan: which apt repositories with which keys, which packages at
which versions (held), which services, groups and installers, and how many
devices the verify step must find (``verify.py``).

Why plan in Python and not in the role: every "which package on which host"
rule (open kernel modules on Blackwell, fabric manager only on NVSwitch
systems, the container toolkit only for docker recipes, CUDA's ``sbsa`` arch
on arm64) is then one tested function, and a bad combination fails before
anything is touched, naming the host and the setting.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from ..errors import LlmfleetError
from ..hostfacts.system import HostFacts
from ..settings import Settings

STACKS_DIR = Path(__file__).resolve().parents[2] / "files" / "stacks"
KEYRINGS = "/etc/apt/keyrings"
INSTALLER_CACHE = "/var/cache/llmfleet/installers"
CUDA_ARCH = {"x86_64": "x86_64", "aarch64": "sbsa"}
DEB_ARCH = {"x86_64": "amd64", "aarch64": "arm64"}


class StackError(LlmfleetError):
    """A stack that cannot be planned for this host (its message names host and setting)."""


@dataclass(frozen=True)
class AptRepo:
    name: str  # file names: /etc/apt/sources.list.d/llmfleet-<name>.sources, keyrings/<name>.asc
    uri: str
    suite: str
    components: tuple[str, ...]
    key_url: str
    pin_priority: int | None = None

    @property
    def keyring(self) -> str:
        return f"{KEYRINGS}/llmfleet-{self.name}.asc"

    @property
    def sources_file(self) -> str:
        return f"/etc/apt/sources.list.d/llmfleet-{self.name}.sources"

    @property
    def origin_host(self) -> str:
        return re.sub(r"^[a-z]+://([^/:]+).*$", r"\1", self.uri)


@dataclass(frozen=True)
class Package:
    name: str
    version: str | None  # None: whatever the (versioned) repository holds
    kernel_module: bool = False
    distro: bool = False  # from the distribution's own repositories (not held)

    @property
    def spec(self) -> str:
        return f"{self.name}={self.version}" if self.version else self.name


@dataclass(frozen=True)
class Installer:
    component: str
    version: str
    file: str
    url: str
    sha256: str
    args: tuple[str, ...]
    installed: str  # a file the installer writes that names its version
    kernel_module: bool = False

    @property
    def path(self) -> str:
        return f"{INSTALLER_CACHE}/{self.file}"


@dataclass(frozen=True)
class StackPlan:
    stack: str
    host: str
    driver_version: str
    repos: tuple[AptRepo, ...] = ()
    packages: tuple[Package, ...] = ()
    installers: tuple[Installer, ...] = ()
    services: tuple[str, ...] = ()
    groups: tuple[str, ...] = ()
    env_scripts: tuple[str, ...] = ()
    expected_devices: int = 0

    @property
    def holds(self) -> tuple[str, ...]:
        return tuple(p.name for p in self.packages if not p.distro)


def load_stack(vendor: str, stacks_dir: Path = STACKS_DIR) -> dict[str, Any]:
    path = stacks_dir / f"{vendor}.yaml"
    if not path.is_file():
        known = sorted(p.stem for p in stacks_dir.glob("*.yaml"))
        raise StackError(f"no accelerator stack {vendor!r} (known: {', '.join(known)})")
    return yaml.safe_load(path.read_text())


def distro_key(facts: HostFacts) -> str | None:
    """``debian12``, ``ubuntu2404``...: how vendors name distro releases in repo paths."""
    if facts.os is None:
        return None
    return facts.os.id + facts.os.version_id.replace(".", "")


def mirrored(url: str, mirrors: dict[str, str]) -> str:
    """``url`` with the longest matching prefix replaced by the site's mirror of it."""
    for prefix in sorted(mirrors, key=len, reverse=True):
        if url.startswith(prefix):
            return mirrors[prefix].rstrip("/") + "/" + url[len(prefix) :].lstrip("/")
    return url


def template_values(doc: dict[str, Any], arch: str) -> dict[str, str]:
    """What ``{...}`` in a stack file's names, versions and URLs may use."""
    driver = str(doc["driver_version"])
    return {
        "driver_version": driver,
        "branch": driver.split(".")[0],
        "package_version": str(doc.get("package_version", "")).format(driver_version=driver),
        "cuda_arch": CUDA_ARCH[arch],
        "deb_arch": DEB_ARCH[arch],
        "arch": arch,
        "driver_arch": arch.replace("_", "-"),  # Huawei's driver files say x86-64
    }


def installer_files(doc: dict[str, Any], arch: str) -> list[str]:
    """The installer file names of a stack for ``arch`` (what a site mirrors and pins)."""
    values = template_values(doc, arch)
    return [str(i["file"]).format(**values) for i in doc.get("installers", [])]


def _when(cond: str | list[str] | None, flags: dict[str, bool]) -> bool:
    """A ``when:`` of the stack file: one condition, or a list that must all hold."""
    conds = [cond] if isinstance(cond, str) else list(cond or [])
    return all(flags.get(c, False) for c in conds)


def plan_stack(
    host: str,
    doc: dict[str, Any],
    facts: HostFacts,
    *,
    hardware: Any,
    runtime: str = "venv",
    settings: Settings | None = None,
) -> StackPlan:
    """The stack ``doc`` for this host, with its settings: ``vendor_mirrors``
    ({url prefix: mirror}), ``nvidia_open_modules``, ``nvidia_driver_version``,
    ``devices_per_host`` (a partial VM), ``cann_installer_url`` and
    ``cann_sha256`` ({file: sha256})."""
    data = settings or Settings()
    stack = doc["id"]
    where = f"{host}: stack {stack}"
    if stack == "nvidia" and data.nvidia_driver_version:
        wanted = data.nvidia_driver_version
        if not re.fullmatch(r"\d{3}\.\d+(\.\d+)?", wanted):
            raise StackError(f"{where}: nvidia_driver_version {wanted!r} is not like 580.159.04")
        doc = {**doc, "driver_version": wanted}
    distro = distro_key(facts)
    arch = (facts.cpu.arch if facts.cpu else None) or hardware.arch
    if arch not in CUDA_ARCH:
        raise StackError(f"{where}: CPU architecture {arch!r} is not supported")
    mirrors = dict(data.vendor_mirrors)
    open_modules = data.nvidia_open_modules
    if not open_modules and hardware.id in doc.get("open_modules_required", []):
        raise StackError(
            f"{where}: nvidia_open_modules=false, but {hardware.id} needs the open kernel "
            "modules (remove the setting)"
        )
    flags = {
        "open": open_modules,
        "proprietary": not open_modules,
        "nvswitch": bool(hardware.nvswitch),
        "docker": runtime == "docker",
        "suffixed": int(str(doc["driver_version"]).split(".")[0])
        < int(doc.get("pinning_from_branch", 10**6)),
        "ubuntu": bool(facts.os and facts.os.id == "ubuntu"),
        **{flag: hardware.id in ids for flag, ids in doc.get("hardware_flags", {}).items()},
    }
    flags["pinning"] = not flags["suffixed"]
    values = {**template_values(doc, arch), "kernel": facts.kernel or ""}
    if "distros" in doc or "codenames" in doc:
        table = doc.get("distros") or doc.get("codenames")
        if distro not in table:
            pretty = facts.os.pretty_name if facts.os else "an unknown OS"
            raise StackError(
                f"{where}: no {stack} packages for {pretty} ({distro}); supported: "
                f"{', '.join(sorted(table))}"
            )
        values["distro"] = values["codename"] = table[distro]

    def fill(text: str) -> str:
        return str(text).format(**values)

    repos = tuple(
        AptRepo(
            name=r["name"],
            uri=mirrored(fill(r["uri"]), mirrors),
            suite=fill(r["suite"]),
            components=tuple(r.get("components", ())),
            key_url=mirrored(fill(r["key_url"]), mirrors),
            pin_priority=r.get("pin_priority"),
        )
        for r in doc.get("repos", [])
        if _when(r.get("when"), flags)
    )
    packages = tuple(
        Package(
            fill(p["name"]),
            fill(p["version"]) if p.get("version") else None,
            bool(p.get("kernel_module")),
            bool(p.get("distro")),
        )
        for p in doc.get("packages", [])
        if _when(p.get("when"), flags)
    )
    installers = _installers(where, doc, data, fill)
    expected = data.devices_per_host or hardware.devices_per_host
    return StackPlan(
        stack=stack,
        host=host,
        driver_version=doc["driver_version"],
        repos=repos,
        packages=packages,
        installers=installers,
        services=tuple(s["name"] for s in doc.get("services", []) if _when(s.get("when"), flags)),
        groups=tuple(doc.get("groups", [])),
        env_scripts=tuple(doc.get("set_env", [])),
        expected_devices=expected,
    )


def _installers(where: str, doc: dict, data: Settings, fill) -> tuple[Installer, ...]:
    items = doc.get("installers", [])
    if not items:
        return ()
    base = data.cann_installer_url
    if not base:
        raise StackError(
            f"{where}: cann_installer_url is not set: the URL where your site mirrors "
            "Huawei's .run installers (the portal needs a login)"
        )
    sums = data.cann_sha256
    out, missing = [], []
    for item in items:
        name = fill(item["file"])
        digest = str(sums.get(name, "")).lower()
        if not re.fullmatch(r"[0-9a-f]{64}", digest):
            missing.append(name)
        out.append(
            Installer(
                component=item["component"],
                version=str(item["version"]),
                file=name,
                url=mirrored(f"{str(base).rstrip('/')}/{name}", {}),
                sha256=digest,
                args=tuple(item.get("args", ())),
                installed=item["installed"],
                kernel_module=bool(item.get("kernel_module")),
            )
        )
    if missing:
        raise StackError(
            f"{where}: no sha256 pinned for {', '.join(missing)}: add them to cann_sha256 "
            "in group data (sha256sum of the files you mirrored); nothing unpinned is run"
        )
    return tuple(out)
