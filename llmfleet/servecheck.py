"""Is a host already exactly what its serve plan says?  Decided from one probe.

A serve deploy that changes nothing used to read ~35 facts per host, one SSH
command each (docs/scale.md).  ``roles/fastpath.py`` reads all of what those
facts would have decided in one round trip (``llmfleet/factbatch.py``) and this
module compares it with the plan: what the engine venv's marker says, the weight
snapshot's check, the current release, every file the server role writes (content,
mode, owner), the service account, the unit's state, the port, what the server
lists.  Only when nothing differs is the host left alone (no operation at all,
reported "already serving"); any difference, or anything this cannot read, sends
the host down the full deploy, which reads its own facts and fixes it.  So the
check may say "stale" too often, never "current" wrongly: every reason is listed.
"""

from __future__ import annotations

import hashlib
import shlex
from dataclasses import dataclass, field

from .hostpaths import (
    CONFIG_DIR,
    ENV_FILE,
    ENV_MARKER,
    HEALTH_SCRIPT,
    HOME,
    UNIT_FILE,
    UNIT_NAME,
    UV,
    release_dir,
)
from .manifest import ReleaseState
from .serveplan import ServePlan

NOLOGIN = "/usr/sbin/nologin"


@dataclass(frozen=True)
class PathWant:
    """A file (``text`` given: its content must match) or a directory, with its mode
    and, where the deploy sets them, owner and group."""

    path: str
    mode: str
    user: str | None = None
    group: str | None = None
    text: bytes | None = None

    @property
    def sha1(self) -> str | None:
        return hashlib.sha1(self.text).hexdigest() if self.text is not None else None


@dataclass(frozen=True)
class ServeWant:
    """Everything a no-op serve run would confirm on one host."""

    release: str
    paths: tuple[PathWant, ...]
    user: str
    venv_marker_path: str
    venv_marker: str
    system_packages: tuple[str, ...]
    port: int
    served_name: str


@dataclass
class Seen:
    """What the probe read; None where a section could not be read."""

    listeners: list | None = None
    uv: bool = False
    venv_marker: str | None = None
    packages: dict[str, bool] = field(default_factory=dict)
    snapshot: dict | None = None
    releases: ReleaseState | None = None
    paths: dict[str, dict[str, str]] = field(default_factory=dict)
    passwd: list[str] | None = None
    group: list[str] | None = None
    active: str | None = None
    enabled: str | None = None
    models: list[str] | None = None


def eligible(plan: ServePlan) -> bool:
    """Only a one-node venv server with its own pull takes the fast path: a serving
    group is judged as one, a docker release by its container, a fan-out needs its
    peers' operations; those always take the full deploy."""
    w = plan.weights
    return not (plan.group or plan.manifest.image or w.peer or w.serves_peers)


def want_of(plan: ServePlan, venv_marker: str, health_script: bytes) -> ServeWant:
    """The plan's end state, as the server and release roles would write it."""
    user = plan.settings.service_user
    d = release_dir(plan.release)
    paths = (
        PathWant(d, "700"),
        PathWant(f"{d}/manifest.json", "600", text=plan.manifest.text().encode()),
        PathWant(f"{d}/{UNIT_NAME}.service", "600", text=plan.unit.encode()),
        PathWant(f"{d}/serve.env", "600", "root", "root", plan.env.encode()),
        PathWant(HOME, "750", user, user),
        PathWant(CONFIG_DIR, "755"),
        PathWant(ENV_FILE, "600", "root", "root", plan.env.encode()),
        PathWant(UNIT_FILE, "644", text=plan.unit.encode()),
        PathWant(HEALTH_SCRIPT, "755", text=health_script),
    )
    return ServeWant(
        release=plan.release,
        paths=paths,
        user=user,
        venv_marker_path=f"{plan.venv}/{ENV_MARKER}",
        venv_marker=venv_marker,
        system_packages=tuple(plan.engine.system_packages),
        port=plan.rendered.port,
        served_name=plan.manifest.served_name,
    )


# --- probe sections (shell) and their parsers ---------------------------------------


# Read in the probe's one Python interpreter (``factbatch.python_batch``), not with a
# stat and a sha1sum per path: a fork and exec each, on every host of every run.
PATHS_PY = r"""
import hashlib, os, pwd, grp, stat, sys
def name(get, i):
    try:
        return get(i)[0]
    except KeyError:
        return "UNKNOWN"
for p in sys.argv[1:]:
    try:
        st = os.stat(p)
    except OSError:
        continue
    kind, sha1 = "other", ""
    if stat.S_ISDIR(st.st_mode):
        kind = "directory"
    elif stat.S_ISREG(st.st_mode):
        kind = "regular file"
        with open(p, "rb") as fh:
            sha1 = hashlib.sha1(fh.read()).hexdigest()
    mode = "%o" % stat.S_IMODE(st.st_mode)
    owner = name(pwd.getpwuid, st.st_uid), name(grp.getgrgid, st.st_gid)
    print("|".join([p, mode, *owner, kind, sha1]))
"""


def paths_program(paths: tuple[PathWant, ...]) -> tuple[str, list[str]]:
    """``path|mode|user|group|type|sha1`` per existing path (sha1 of regular files), as a
    program for ``factbatch.python_batch``."""
    return PATHS_PY, ["paths", *(p.path for p in paths)]


def parse_paths(lines: list[str]) -> dict[str, dict[str, str]]:
    out = {}
    for line in lines:
        parts = line.split("|")
        if len(parts) == 6:
            path, mode, user, group, kind, sha1 = parts
            out[path] = {"mode": mode, "user": user, "group": group, "type": kind, "sha1": sha1}
    return out


ACCOUNT_PY = r"""
import grp, pwd, sys
try:
    pw = pwd.getpwnam(sys.argv[1])
    print("passwd:" + ":".join(map(str, pw)))
except KeyError:
    print("passwd:")
try:
    gr = grp.getgrnam(sys.argv[1])
    print("group:" + ":".join([gr.gr_name, gr.gr_passwd, str(gr.gr_gid), ",".join(gr.gr_mem)]))
except KeyError:
    print("group:")
"""


def account_program(user: str) -> tuple[str, list[str]]:
    """The user's and group's entries, as ``getent passwd``/``group`` print them."""
    return ACCOUNT_PY, ["account", user]


def parse_account(lines: list[str]) -> tuple[list[str] | None, list[str] | None]:
    passwd = group = None
    for line in lines:
        kind, _, rest = line.partition(":")
        if kind == "passwd" and rest:
            passwd = rest.split(":")
        elif kind == "group" and rest:
            group = rest.split(":")
    return passwd, group


def unit_command() -> str:
    return f"systemctl show -p ActiveState -p UnitFileState {UNIT_NAME}.service"


def parse_unit(lines: list[str]) -> tuple[str | None, str | None]:
    """(ActiveState, UnitFileState): ``active``/``enabled`` when all is well."""
    found = dict(line.partition("=")[::2] for line in lines if "=" in line)
    return found.get("ActiveState") or None, found.get("UnitFileState") or None


def packages_command(packages: tuple[str, ...]) -> str:
    if not packages:
        return "true"
    names = " ".join(shlex.quote(p) for p in packages)
    return f"dpkg-query -W -f='${{Package}} ${{db:Status-Abbrev}}\\n' {names}"


def parse_packages(lines: list[str]) -> dict[str, bool]:
    out = {}
    for line in lines:
        words = line.split()
        if words:
            out[words[0].split(":")[0]] = len(words) > 1 and words[1].startswith("ii")
    return out


def uv_command() -> str:
    return f"[ -e {UV} ] && echo yes || echo no"


def marker_command(path: str) -> str:
    return f"cat {shlex.quote(path)} 2>/dev/null || true"


# --- the decision -------------------------------------------------------------------


def stale(want: ServeWant, seen: Seen) -> list[str]:
    """Why the host is not exactly at the plan (empty: it is, nothing to do)."""
    why: list[str] = []
    if seen.listeners is None or seen.listeners:
        why.append(f"port {want.port}: another process listens, or it could not be read")
    if not seen.uv:
        why.append("uv is not installed")
    if (seen.venv_marker or "").strip() != want.venv_marker:
        why.append(f"engine venv: marker differs ({want.venv_marker_path})")
    missing = [p for p in want.system_packages if not seen.packages.get(p)]
    if missing:
        why.append(f"system packages missing: {' '.join(missing)}")
    if not (seen.snapshot or {}).get("ok"):
        why.append("weights: the snapshot check did not pass")
    current = seen.releases.current if seen.releases else None
    if current != want.release:
        why.append(f"release: current is {current}, the plan's is {want.release}")
    for p in want.paths:
        why += _path_problems(p, seen.paths.get(p.path))
    why += _account_problems(want.user, seen.passwd, seen.group)
    if seen.active != "active":
        why.append(f"{UNIT_NAME}: {seen.active or 'state unknown'}")
    if seen.enabled != "enabled":
        why.append(f"{UNIT_NAME}: {seen.enabled or 'unknown'}, not enabled")
    if seen.models is None or want.served_name not in seen.models:
        why.append(f"the server does not list {want.served_name!r} (lists {seen.models})")
    return why


def _path_problems(want: PathWant, seen: dict[str, str] | None) -> list[str]:
    if seen is None:
        return [f"{want.path}: missing"]
    kind = "regular file" if want.text is not None else "directory"
    if kind not in seen["type"]:  # "regular empty file" is a regular file too
        return [f"{want.path}: a {seen['type']}, not a {kind}"]
    why = []
    if int(seen["mode"], 8) != int(want.mode, 8):
        why.append(f"{want.path}: mode {seen['mode']}, not {want.mode}")
    if want.user and seen["user"] != want.user:
        why.append(f"{want.path}: owner {seen['user']}, not {want.user}")
    if want.group and seen["group"] != want.group:
        why.append(f"{want.path}: group {seen['group']}, not {want.group}")
    if want.sha1 and seen["sha1"] != want.sha1:
        why.append(f"{want.path}: content differs")
    return why


def _account_problems(user: str, passwd: list[str] | None, group: list[str] | None) -> list[str]:
    if not group or len(group) < 3:
        return [f"group {user}: missing"]
    if not passwd or len(passwd) < 7:
        return [f"user {user}: missing"]
    why = []
    if passwd[3] != group[2]:
        why.append(f"user {user}: primary group {passwd[3]}, not {user} ({group[2]})")
    if passwd[5] != HOME:
        why.append(f"user {user}: home {passwd[5]}, not {HOME}")
    if passwd[6] != NOLOGIN:
        why.append(f"user {user}: shell {passwd[6]}, not {NOLOGIN}")
    return why
