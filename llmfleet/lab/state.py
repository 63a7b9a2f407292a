"""The lab's memory: one JSON file in the state dir, plus the helpers every lab
module shares (where things live, running a command with an error that names
what failed, one lock so two ``lab up`` cannot race).

The state file is how ``lab down`` finds what ``lab up`` made, how ``status``
finds the hosts, and how other tools (the lab inventory, the side services)
learn addresses, SSH keys and service URLs.  It is written atomically so a
reader never sees half a file.

Format (``state.json``)::

    {
      "version": 1,
      "state_dir": "/var/lib/llmfleet-lab",
      "base_rootfs": "/var/cache/llmfleet-lab/bookworm",
      "bridge": "llmfl0", "gateway": "10.213.0.1", "prefix": 24,
      "ssh_key": ".../id_ed25519", "known_hosts": ".../known_hosts",
      "ssh_config": ".../ssh_config",
      "hosts": [{"name": "lab1", "address": "10.213.0.11", "ssh_user": "root",
                 "ssh_key": "...", "known_hosts": "...", "netns": "llmfleet-lab1",
                 "root": ".../hosts/lab1/root", "pid": 1234,
                 "proc_sys_writable": true, "log": ".../hosts/lab1/nspawn.log",
                 "overlay": true}],
      "services": {"hub_url": "...", "wheelhouse_url": "..."}
    }
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import subprocess
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from ..errors import LlmfleetError

STATE_VERSION = 1
DEFAULT_STATE_DIR = "/var/lib/llmfleet-lab"


class LabError(LlmfleetError):
    """A lab step failed; the message names the host (if any) and the step."""


def state_dir() -> Path:
    """The lab's working dir; env ``LLMFLEET_LAB_STATE`` moves it (tests, two labs)."""
    return Path(os.environ.get("LLMFLEET_LAB_STATE", DEFAULT_STATE_DIR))


def state_file() -> Path:
    """Where the state JSON lives inside the state dir."""
    return state_dir() / "state.json"


def load_state() -> dict[str, Any] | None:
    """The lab state, or None when no lab was brought up (or it was taken down)."""
    path = state_file()
    try:
        text = path.read_text()
    except FileNotFoundError:
        return None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise LabError(
            f"lab state {path} is not valid JSON ({exc}); run `llmfleet lab down`"
        ) from exc
    data.setdefault("hosts", [])
    data.setdefault("services", {})
    return data


def save_state(state: dict[str, Any]) -> None:
    """Write the state atomically (temp file + rename) so readers never see half of it."""
    path = state_file()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(state, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, path)


@contextlib.contextmanager
def lab_lock() -> Iterator[None]:
    """Hold an exclusive lock per state dir (kept in /run/lock, which is what it is for,
    so ``down`` can delete the state dir): two ``lab up/down`` at once would fight."""
    sdir = str(state_dir().resolve())
    lock_dir = Path("/run/lock") if Path("/run/lock").is_dir() else Path("/tmp")
    lock_path = lock_dir / f"llmfleet-lab-{hashlib.sha1(sdir.encode()).hexdigest()[:12]}.lock"
    with open(lock_path, "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def run(
    cmd: Sequence[str | os.PathLike[str]],
    what: str,
    *,
    check: bool = True,
    env: dict[str, str] | None = None,
    timeout: float | None = 600,
) -> subprocess.CompletedProcess[str]:
    """Run a command (list, never a shell); on failure raise LabError saying ``what``
    failed, the command and its stderr, because a bare CalledProcessError
    does not tell which host or which step broke."""
    argv = [str(c) for c in cmd]
    try:
        proc = subprocess.run(
            argv, check=False, capture_output=True, text=True, env=env, timeout=timeout
        )
    except FileNotFoundError as exc:
        raise LabError(
            f"{what}: {argv[0]} not found; run scripts/lab-prereqs.sh to install "
            "the lab's Debian packages"
        ) from exc
    except subprocess.TimeoutExpired as exc:
        raise LabError(f"{what}: `{' '.join(argv)}` timed out after {timeout}s") from exc
    if check and proc.returncode != 0:
        detail = (proc.stderr or proc.stdout).strip()[-2000:]
        raise LabError(f"{what}: `{' '.join(argv)}` exited {proc.returncode}: {detail}")
    return proc
