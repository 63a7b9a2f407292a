"""The STAND-IN stub engine as a wheel in the lab's wheelhouse, so the serve deploy
installs it into an engine venv like any engine (recipe ``lab-cpu-stub``).

The wheel holds one top-level module, ``llmfleet_stubengine``: the source of
:mod:`llmfleet.lab.stubengine`, which needs only aiohttp (already in the
wheelhouse, as a vLLM dependency).  It is written by hand (a wheel is a zip with
three metadata files), byte-for-byte the same for the same source, so re-making
it on every ``lab up`` changes nothing a host can see.
"""

from __future__ import annotations

import base64
import hashlib
import zipfile
from pathlib import Path

from . import stubengine

NAME = "llmfleet_stubengine"
VERSION = "1.0"
REQUIRES = ("aiohttp",)
# a fixed time for every zip entry: same source, same bytes
EPOCH = (2020, 1, 1, 0, 0, 0)


def wheel_name() -> str:
    return f"{NAME}-{VERSION}-py3-none-any.whl"


def _record_line(path: str, data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{path},sha256={digest},{len(data)}"


def wheel_files(source: str) -> dict[str, bytes]:
    """Every file of the wheel, RECORD last, as {path in the zip: bytes}."""
    info = f"{NAME}-{VERSION}.dist-info"
    files = {
        f"{NAME}.py": source.encode(),
        f"{info}/METADATA": (
            "Metadata-Version: 2.1\n"
            "Name: llmfleet-stubengine\n"
            f"Version: {VERSION}\n"
            "Summary: STAND-IN OpenAI-compatible stub server for the llmfleet lab\n"
            + "".join(f"Requires-Dist: {r}\n" for r in REQUIRES)
        ).encode(),
        f"{info}/WHEEL": (
            b"Wheel-Version: 1.0\nGenerator: llmfleet\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
        ),
    }
    record = [_record_line(p, d) for p, d in files.items()] + [f"{info}/RECORD,,"]
    files[f"{info}/RECORD"] = ("\n".join(record) + "\n").encode()
    return files


def write(wheels_dir: Path) -> Path:
    """Put the wheel into the wheelhouse's find-links directory (replaced only when
    its bytes differ, atomically)."""
    target = Path(wheels_dir) / wheel_name()
    tmp = target.with_suffix(".tmp")
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as zf:
        for path, data in wheel_files(Path(stubengine.__file__).read_text()).items():
            entry = zipfile.ZipInfo(path, date_time=EPOCH)
            entry.external_attr = 0o644 << 16
            zf.writestr(entry, data, compress_type=zipfile.ZIP_DEFLATED)
    if target.is_file() and target.read_bytes() == tmp.read_bytes():
        tmp.unlink()
    else:
        tmp.replace(target)
    return target
