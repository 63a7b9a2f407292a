"""The lab's Hugging Face Hub: the tiny model in a local git repo, served by olah.

Lab hosts have no internet, yet the deploy downloads models the way it does
in production (``huggingface_hub`` against ``HF_ENDPOINT``, a revision
resolved to a commit hash).  olah (``olah==0.5.4``, the ``lab`` extra) serves
local git repos as a Hub endpoint when started with a TOML config holding
``mirrors-path`` and ``offline = true`` (neither exists as a CLI flag).

What olah expects, read from its source and checked by the tests:

* Layout: ``<mirrors-path>/<repo_type>/<org>/<name>`` with repo_type plural
  (``models``), a normal (non-bare) git repo.
* Revisions go through GitPython's ``repo.commit(rev)``: branches, tags (also
  annotated) and full or abbreviated commit hashes all resolve, and
  ``/api/models/<repo>/revision/<rev>`` answers ``sha`` = the commit hash.
* Plain git blobs are served as they are; LFS is optional (a pointer is
  resolved from ``.git/lfs/objects`` of the work tree), so the few-MB model
  needs no git-lfs.  No Xet headers are sent, so clients need no
  ``HF_HUB_DISABLE_XET``.
* A missing revision and a missing repo look the same: 401 with
  ``X-Error-Code: RepoNotFound``, i.e. ``RepositoryNotFoundError`` in
  ``huggingface_hub`` (never ``RevisionNotFoundError``).

The repo is rebuilt from scratch each time with fixed authors and dates, so
its commit hashes are a pure function of the generator: ``start`` twice (or
on another machine) gives the same ``v1``/``main`` shas.

This module also holds :class:`Daemon`, the small "detached process with a
pidfile" helper the wheelhouse server uses too (the lab has no systemd).
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from . import tinymodel
from .state import LabError, run

DEFAULT_REPO = "llmfleet-lab/tiny-qwen2"
DEFAULT_HOST = "10.213.0.1"
DEFAULT_PORT = 8090
START_TIMEOUT = 60.0

# Fixed identity and dates: with the same files, the same commit hashes.
_GIT_ENV = {
    "GIT_AUTHOR_NAME": "llmfleet lab",
    "GIT_AUTHOR_EMAIL": "lab@llmfleet.invalid",
    "GIT_COMMITTER_NAME": "llmfleet lab",
    "GIT_COMMITTER_EMAIL": "lab@llmfleet.invalid",
    # Keep the user's/system git config (signing, hooks, templates) out of it.
    "GIT_CONFIG_GLOBAL": os.devnull,
    "GIT_CONFIG_NOSYSTEM": "1",
}
_V1_DATE = "2025-01-01T00:00:00+0000"
_MAIN_DATE = "2025-01-02T00:00:00+0000"
CARD_NOTE = (
    "\n## Revisions\n\n"
    "`v1` holds the model as generated; `main` is one commit later and only adds\n"
    "this section, so a deploy pinned to `v1` and one following `main` resolve to\n"
    "different commit hashes while getting the same weights.\n"
)


# --------------------------------------------------------------------------
# Detached processes (no systemd on the control machine)
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class Daemon:
    """A background process started in its own session, tracked by a pidfile.

    The pidfile holds ``PID STARTTIME LOGOFFSET``: the process is ours while a
    live PID has that start time (field 22 of /proc/PID/stat, set at fork and
    never changed by exec), which no reused PID can fake.  (The command line
    is no identity: /proc/PID/cmdline reads *empty* for a moment after
    ``Popen`` returns, while the kernel is still inside execve; measured here
    on 58 of 60 starts when read at once.  That is what made a freshly
    started wheelhouse look dead: see docs/lab-isolation.md.)  LOGOFFSET is where this
    start's lines begin in the log, so an error shows this start's output.
    ``match`` (a piece of the command line) is only used for a pidfile an
    older llmfleet wrote with the PID alone.
    """

    name: str
    run_dir: Path
    match: str

    @property
    def pidfile(self) -> Path:
        return self.run_dir / f"{self.name}.pid"

    @property
    def logfile(self) -> Path:
        return self.run_dir / f"{self.name}.log"

    def _record(self) -> list[str]:
        try:
            return self.pidfile.read_text().split()
        except FileNotFoundError:
            return []

    def pid(self) -> int | None:
        """The live pid from the pidfile, or None (missing, dead, zombie or reused)."""
        fields = self._record()
        try:
            pid = int(fields[0])
        except (IndexError, ValueError):
            return None
        if not _alive(pid):
            return None
        if len(fields) > 1:
            return pid if _starttime(pid) == fields[1] else None
        return pid if self.match in _cmdline(pid) else None

    @property
    def stampfile(self) -> Path:
        return self.run_dir / f"{self.name}.stamp"

    def start(
        self, argv: list[str], env: dict[str, str] | None = None, cwd: Path | None = None
    ) -> int:
        """Start ``argv`` detached (new session, stdio to the log) unless it runs already."""
        running = self.pid()
        if running is not None:
            return running
        self.run_dir.mkdir(parents=True, exist_ok=True)
        with open(self.logfile, "ab") as log:
            offset = log.tell()
            log.write(f"\n=== {time.strftime('%F %T')} {' '.join(argv)}\n".encode())
            log.flush()
            proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                close_fds=True,
                env=env,
                cwd=cwd,
            )
        _CHILDREN[proc.pid] = proc
        self.pidfile.write_text(f"{proc.pid} {_starttime(proc.pid)} {offset}\n")
        return proc.pid

    def ensure(
        self,
        argv: list[str],
        stamp: str,
        env: dict[str, str] | None = None,
        cwd: Path | None = None,
    ) -> int:
        """Keep a running daemon whose ``stamp`` (what it was started with) is unchanged;
        otherwise (re)start it.  This is what makes ``lab up`` twice harmless."""
        pid = self.pid()
        if pid is not None and _read(self.stampfile) == stamp:
            return pid
        self.stop()
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.stampfile.write_text(stamp)
        return self.start(argv, env, cwd)

    def stop(self, timeout: float = 15.0) -> bool:
        """SIGTERM the process group, SIGKILL it after ``timeout``; True if one was running.
        The log stays (``lab down`` keeps it too)."""
        pid = self.pid()
        if pid is not None:
            _signal_group(pid, signal.SIGTERM)
            if not _wait_gone(pid, timeout):
                _signal_group(pid, signal.SIGKILL)
                _wait_gone(pid, 5.0)
        self.pidfile.unlink(missing_ok=True)
        self.stampfile.unlink(missing_ok=True)
        return pid is not None

    def log_tail(self, chars: int = 3000, since_start: bool = False) -> str:
        """The log's last ``chars``; with ``since_start``, only what the latest start wrote."""
        fields = self._record()
        offset = int(fields[2]) if since_start and len(fields) > 2 else 0
        try:
            with open(self.logfile, "rb") as fh:
                fh.seek(offset)
                return fh.read().decode(errors="replace")[-chars:]
        except FileNotFoundError:
            return ""

    def exit_status(self) -> str:
        """How the last process this interpreter started for us ended, if it did."""
        fields = self._record()
        proc = _CHILDREN.get(int(fields[0])) if fields and fields[0].isdigit() else None
        code = proc.poll() if proc is not None else None
        if code is None:
            return "gone" if proc is None else "running"
        return f"killed by signal {-code}" if code < 0 else f"exit status {code}"


# Popen objects of the daemons this process started, by pid: their exit status
# for error messages, and no zombies left behind.
_CHILDREN: dict[int, subprocess.Popen] = {}


def _read(path: Path) -> str | None:
    try:
        return path.read_text()
    except FileNotFoundError:
        return None


def _stat_fields(pid: int) -> list[str]:
    """/proc/PID/stat after the command name (field 3 on), or [] if it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return []
    return stat.rsplit(")", 1)[1].split()


def _alive(pid: int) -> bool:
    """True for a running process; a zombie (dead, not yet reaped) counts as gone."""
    fields = _stat_fields(pid)
    return bool(fields) and fields[0] not in ("Z", "X")


def _starttime(pid: int) -> str | None:
    """Start time of ``pid`` in clock ticks since boot (field 22 of /proc/PID/stat)."""
    fields = _stat_fields(pid)
    return fields[19] if len(fields) > 19 else None


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except (FileNotFoundError, ProcessLookupError):
        return ""


def _signal_group(pid: int, sig: int) -> None:
    """Signal the whole session's group (the daemon leads it), else the pid alone."""
    try:
        os.killpg(pid, sig)
    except ProcessLookupError:
        return
    except PermissionError:
        os.kill(pid, sig)


def _wait_gone(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)  # our own child would linger as a zombie
        if not _alive(pid):
            return True
        time.sleep(0.1)
    return not _alive(pid)


def wait_http(url: str, daemon: Daemon, timeout: float = START_TIMEOUT) -> None:
    """Poll ``url`` until it answers 200; fail early if the daemon died, with how it
    ended and what this start wrote to its log."""
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=5) as resp:
                if resp.status == 200:
                    return
                last = f"HTTP {resp.status}"
        except (urllib.error.URLError, OSError) as exc:
            last = str(exc)
        if daemon.pid() is None:
            raise LabError(
                f"{daemon.name} exited during start ({daemon.exit_status()}; {url}: {last}); "
                f"log {daemon.logfile}:\n{daemon.log_tail(since_start=True) or '(empty)'}"
            )
        time.sleep(0.3)
    raise LabError(
        f"{daemon.name}: {url} not ready after {timeout:.0f}s ({last}); log "
        f"{daemon.logfile}:\n{daemon.log_tail(since_start=True)}"
    )


# --------------------------------------------------------------------------
# The model repo
# --------------------------------------------------------------------------


def repo_path(mirrors_root: Path, repo_id: str = DEFAULT_REPO) -> Path:
    """Where olah looks for ``repo_id``: ``<mirrors>/models/<org>/<name>``."""
    org, name = repo_id.split("/", 1)
    return Path(mirrors_root) / "models" / org / name


def _git(repo: Path, *args: str, date: str | None = None) -> str:
    env = {**os.environ, **_GIT_ENV}
    if date:
        env["GIT_AUTHOR_DATE"] = env["GIT_COMMITTER_DATE"] = date
    return run(["git", "-C", str(repo), *args], f"hub repo: git {args[0]}", env=env).stdout


def _commit_all(repo: Path, message: str, date: str) -> None:
    _git(repo, "add", "-A")
    _git(repo, "commit", "-q", "--no-verify", "-m", message, date=date)


def refs(repo: Path) -> dict[str, str]:
    """Branches and tags of a repo as {name: commit sha} (tags peeled)."""
    out = _git(repo, "for-each-ref", "--format=%(refname:short) %(objectname) %(*objectname)")
    result = {}
    for line in out.splitlines():
        name, sha, *peeled = line.split()
        result[name] = peeled[0] if peeled else sha
    return result


def _build_into(work: Path, spec: tinymodel.TinySpec) -> None:
    """``v1`` = the generated model; ``main`` = v1 plus a model-card commit."""
    work.mkdir(parents=True)
    _git(work, "init", "-q", "-b", "main")
    tinymodel.generate(work, spec)
    _commit_all(work, f"tiny-qwen2 v1 (seed {spec.seed})", _V1_DATE)
    _git(work, "tag", "v1")
    with open(work / "README.md", "a") as fh:
        fh.write(CARD_NOTE)
    _commit_all(work, "Model card: describe the revisions", _MAIN_DATE)


def build_repo(
    mirrors_root: Path, repo_id: str = DEFAULT_REPO, spec: tinymodel.TinySpec | None = None
) -> dict[str, str]:
    """Make (or refresh) the model repo under ``mirrors_root``; return its refs.

    Built from scratch in a temp dir and swapped in only when its refs differ,
    so an unchanged generator leaves the served repo untouched (olah keeps
    serving while this runs).
    """
    spec = spec or tinymodel.TinySpec()
    return _swap_in(repo_path(mirrors_root, repo_id), lambda work: _build_into(work, spec))


def build_repo_from_files(
    mirrors_root: Path,
    repo_id: str,
    write: Callable[[Path], None],
    message: str,
    date: str = _V1_DATE,
    compression: int | None = None,
) -> dict[str, str]:
    """Make ``repo_id`` under ``mirrors_root`` from files of the caller's: one
    commit on ``main`` holding what ``write(work_tree)`` puts there; return its refs.

    Same fixed identity and ``date`` as the lab model, so the same files give
    the same commit hash, and the same swap-in as :func:`build_repo`.  Blobs
    are plain git objects (olah serves them without LFS); ``compression=0``
    stores them with zlib level 0, which makes ``git add`` of multi-GB random
    weights about 4x faster (random bytes do not compress anyway).
    """

    def build(work: Path) -> None:
        work.mkdir(parents=True)
        _git(work, "init", "-q", "-b", "main")
        if compression is not None:
            _git(work, "config", "core.compression", str(int(compression)))
        write(work)
        _commit_all(work, message, date)

    return _swap_in(repo_path(mirrors_root, repo_id), build)


def _swap_in(target: Path, build: Callable[[Path], None]) -> dict[str, str]:
    """``build(work)`` a repo in a temp dir beside ``target``; move it in place
    of ``target`` unless the refs are the same; return the refs."""
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=".build-") as tmp:
        work = Path(tmp) / "repo"
        build(work)
        new = refs(work)
        if target.is_dir() and _safe_refs(target) == new:
            return new
        old = Path(tmp) / "old"
        if target.exists():
            target.rename(old)
        work.rename(target)
    return new


def _safe_refs(repo: Path) -> dict[str, str] | None:
    try:
        return refs(repo)
    except LabError:
        return None


# --------------------------------------------------------------------------
# The olah server
# --------------------------------------------------------------------------


def olah_config(mirrors_root: Path, run_dir: Path, host: str, port: int) -> str:
    """olah's TOML: only the config file can set ``mirrors-path`` and ``offline``."""

    def q(value: str) -> str:
        return json.dumps(str(value))  # a JSON string is a valid TOML basic string

    return "\n".join(
        [
            "[basic]",
            f"host = {q(host)}",
            f"port = {int(port)}",
            f"repos-path = {q(run_dir / 'olah-repos')}",
            f"mirrors-path = [{q(mirrors_root)}]",
            f"mirror-netloc = {q(f'{host}:{port}')}",
            f"mirror-lfs-netloc = {q(f'{host}:{port}')}",
            "",
            "[accessibility]",
            "offline = true",
            "",
        ]
    )


def daemon(run_dir: Path) -> Daemon:
    return Daemon("hub", Path(run_dir), match="olah.server")


def url(host: str, port: int) -> str:
    return f"http://{host}:{port}"


def start(
    mirrors_root: Path,
    run_dir: Path,
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    repo_id: str = DEFAULT_REPO,
    timeout: float = START_TIMEOUT,
) -> str:
    """Run olah (offline, serving ``mirrors_root``) on host:port; return its URL.

    A hub already running from the same run_dir is kept when its config is
    unchanged, and restarted otherwise (e.g. another port).  Repos are read
    per request, so a rebuilt repo needs no restart.
    """
    if importlib.util.find_spec("olah") is None:
        raise LabError("the lab hub needs olah: pip install -e '.[lab]' (olah==0.5.4)")
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    config = run_dir / "olah.toml"
    text = olah_config(Path(mirrors_root).resolve(), run_dir.resolve(), host, port)
    argv = [
        sys.executable,
        "-m",
        "olah.server",
        "--config",
        str(config),
        "--log-path",
        str(run_dir / "olah-logs"),
    ]
    d = daemon(run_dir)
    if _read(config) != text:
        d.stop()  # a running olah read the old config; never leave it serving that
        config.write_text(text)
    d.ensure(argv, stamp=text, cwd=run_dir)
    wait_http(probe_url(url(host, port), repo_id), d, timeout)
    return url(host, port)


def stop(run_dir: Path) -> bool:
    """Stop the hub if it runs; True if it did."""
    return daemon(run_dir).stop()


def probe_url(hub_url: str, repo_id: str = DEFAULT_REPO, revision: str = "main") -> str:
    """The API call the deploy makes first, so 'healthy' means 'can serve the model'."""
    return f"{hub_url}/api/models/{repo_id}/revision/{revision}"


# --------------------------------------------------------------------------
# Client side (what a lab host does), used by start() and the tests
# --------------------------------------------------------------------------


def resolve_revision(hub_url: str, repo_id: str, revision: str) -> str:
    """Revision (branch, tag, short sha) -> full commit hash, via ``model_info``.

    Raises ``huggingface_hub.errors.RepositoryNotFoundError`` for a missing
    repo *or* revision (olah answers both with RepoNotFound).
    """
    from huggingface_hub import HfApi

    return HfApi(endpoint=hub_url, token=False).model_info(repo_id, revision=revision).sha


def download(hub_url: str, repo_id: str, revision: str, local_dir: Path) -> Path:
    """``snapshot_download`` into ``local_dir``, as a lab host fetches the model
    (progress bars off: this runs inside ``lab up``'s output)."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.utils import (
        are_progress_bars_disabled,
        disable_progress_bars,
        enable_progress_bars,
    )

    was_disabled = are_progress_bars_disabled()
    disable_progress_bars()
    try:
        return Path(
            snapshot_download(
                repo_id, revision=revision, endpoint=hub_url, local_dir=str(local_dir), token=False
            )
        )
    finally:
        if not was_disabled:
            enable_progress_bars()


def verify(hub_url: str, repo_id: str, revision: str, expected_sha: str) -> None:
    """Resolve and download one revision end to end; raise LabError if anything differs."""
    sha = resolve_revision(hub_url, repo_id, revision)
    if sha != expected_sha:
        raise LabError(
            f"hub {hub_url}: {repo_id}@{revision} resolves to {sha}, expected {expected_sha}"
        )
    with tempfile.TemporaryDirectory(prefix="llmfleet-hub-verify-") as tmp:
        got = download(hub_url, repo_id, revision, Path(tmp) / "m")
        missing = [f for f in tinymodel.FILES if not (got / f).is_file()]
        if missing:
            raise LabError(f"hub {hub_url}: {repo_id}@{revision} lacks {missing}")
