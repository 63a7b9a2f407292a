"""The lab's Debian mirror: the real Debian packages the lab's deploys install on lab hosts.

Lab hosts have no route to a Debian mirror.  The venv path's one OS package
(libnuma1) is baked into the base rootfs; the docker path's are not, because
installing them *is* what the deploy does there: the container-engine role
(``roles/container.py``) installs ``docker.io`` at its pin and holds it, the
site-registry role (``roles/registry.py``) installs ``docker-registry``, both
with apt; so does the monitor deploy (``roles/monitor.py``: Debian's node
exporter, Prometheus and Alertmanager).  So ``llmfleet lab up --docker`` (or
``--monitor``) makes a partial mirror of this
machine's own Debian archive: those packages plus what they need beyond the
base rootfs (apt resolves that against the base's dpkg status), fetched with
``apt-get download`` once and kept in the lab cache, indexed like a Debian
archive (``dists/bookworm/main/binary-amd64/Packages``), signed with the lab's
repository key, and served beside the wheels.  Docker lab hosts (every host of
a ``--monitor`` lab) get it as an apt source; other lab hosts are not touched
(their rootfs, apt sources and boot stay what they were).

Nothing here is a stand-in (compare :mod:`llmfleet.lab.vendor`): the packages
are Debian's own, byte for byte, at the versions this machine's apt offers.
"""

from __future__ import annotations

import email.utils
import hashlib
import json
import re
import shutil
import subprocess
from pathlib import Path

from ..containers import runtime_doc
from ..monitorplan import PACKAGES as MONITOR_PACKAGES
from .rootfs import SUITE
from .state import LabError
from .vendor import Signer, _packages_index

DIR = "debian"  # under the wheelhouse root: <wheelhouse base URL>/debian
KEY_FILE = "llmfleet-lab-debian.asc"
STAMP = "llmfleet-lab-mirror.json"
# on a lab host
SOURCES = "/etc/apt/sources.list.d/llmfleet-lab-debian.sources"
KEYRING = "/etc/apt/keyrings/llmfleet-lab-debian.asc"
REGISTRY_PACKAGE = "docker-registry"


def wanted(distro: str = "debian12") -> list[str]:
    """What the lab's deploys install from Debian: docker.io at the pin of
    files/runtimes/docker.yaml (the same pin the role installs), the site registry's
    package, and the monitor deploy's packages."""
    doc = runtime_doc()
    pin = doc.get("versions", {}).get(distro)
    docker = f"{doc['package']}={pin}" if pin else doc["package"]
    return [docker, REGISTRY_PACKAGE, *MONITOR_PACKAGES]


def resolve(base: Path, packages: list[str]) -> list[tuple[str, str]]:
    """``[(name, version)]``: what apt would install on a host built from ``base``
    (its dpkg status) for ``packages``, without recommends, from this machine's
    apt lists."""
    argv = [
        "apt-get",
        "-s",
        "-o",
        f"Dir::State::status={base}/var/lib/dpkg/status",
        "-o",
        "APT::Install-Recommends=false",
        "install",
        *packages,
    ]
    proc = subprocess.run(argv, capture_output=True, text=True)
    if proc.returncode != 0:
        raise LabError(
            f"lab Debian mirror: apt cannot resolve {' '.join(packages)} "
            f"({(proc.stderr or proc.stdout).strip()[-1500:]}); the pin comes from "
            "files/runtimes/docker.yaml and must be what this machine's apt offers"
        )
    found = re.findall(r"^Inst (\S+) \((\S+) ", proc.stdout, re.M)
    names = {n for n, _ in found}
    missing = [p for p in packages if p.split("=")[0] not in names]
    if missing:
        raise LabError(f"lab Debian mirror: apt would not install {missing}:\n{proc.stdout}")
    return sorted(found)


def _cached(dest: Path, name: str, version: str) -> list[Path]:
    # apt-get download's file name: the epoch's ':' becomes '%3a'
    return sorted(dest.glob(f"{name}_{version.replace(':', '%3a')}_*.deb"))


def download(pkgs: list[tuple[str, str]], dest: Path) -> list[Path]:
    """``apt-get download`` each ``name=version`` missing from ``dest`` (kept between labs)."""
    dest.mkdir(parents=True, exist_ok=True)
    todo = [f"{n}={v}" for n, v in pkgs if not _cached(dest, n, v)]
    if todo:
        proc = subprocess.run(
            ["apt-get", "download", "-q", *todo], cwd=dest, capture_output=True, text=True
        )
        if proc.returncode != 0:
            raise LabError(
                f"lab Debian mirror: apt-get download {' '.join(todo)} failed: "
                f"{proc.stderr.strip()[-1500:]}"
            )
    out = []
    for n, v in pkgs:
        found = _cached(dest, n, v)
        if not found:
            raise LabError(f"lab Debian mirror: {n}={v} not in {dest} after apt-get download")
        out.append(found[0])
    return out


def _release(index: str, text: str) -> str:
    data = text.encode()
    return (
        "Origin: llmfleet lab Debian mirror\n"
        "Label: Debian (partial: what the lab's deploys install)\n"
        f"Suite: {SUITE}\nCodename: {SUITE}\nComponents: main\nArchitectures: amd64\n"
        f"Date: {email.utils.formatdate(usegmt=True)}\n"
        f"SHA256:\n {hashlib.sha256(data).hexdigest()} {len(data)} {index}\n"
    )


def build(served: Path, debs_cache: Path, base: Path, signer: Signer) -> dict:
    """The mirror under ``served`` (rebuilt only when what it must hold changed);
    returns ``{"packages": {name: version}}``."""
    pkgs = resolve(base, wanted())
    stamp = {"packages": dict(pkgs), "suite": SUITE}
    try:
        if json.loads((served / STAMP).read_text()) == stamp:
            return stamp
    except (OSError, ValueError):
        pass
    debs = download(pkgs, debs_cache)
    tmp = served.with_name(served.name + ".build")
    shutil.rmtree(tmp, ignore_errors=True)
    pool = tmp / "pool" / "main"
    pool.mkdir(parents=True)
    for deb in debs:
        shutil.copyfile(deb, pool / deb.name)
    index = "main/binary-amd64/Packages"
    text = _packages_index(sorted(pool.glob("*.deb")), tmp)
    dist = tmp / "dists" / SUITE
    (dist / index).parent.mkdir(parents=True)
    (dist / index).write_text(text)
    (dist / "Release").write_text(_release(index, text))
    signer.clearsign(dist / "Release")
    (tmp / KEY_FILE).write_text(signer.public_key())
    (tmp / STAMP).write_text(json.dumps(stamp, indent=2))
    shutil.rmtree(served, ignore_errors=True)
    tmp.rename(served)
    return stamp


def host_files(url: str, key: str) -> dict[str, str]:
    """``{path on the host: text}``: the apt source naming the mirror, and its key."""
    return {
        SOURCES: (
            "# llmfleet lab: the lab's partial Debian mirror (llmfleet/lab/debmirror.py)\n"
            f"Types: deb\nURIs: {url}\nSuites: {SUITE}\nComponents: main\nSigned-By: {KEYRING}\n"
        ),
        KEYRING: key,
    }
