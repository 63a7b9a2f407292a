"""The pure parts of running at fleet scale: facts batched into one command, the
serve no-change check, the light lab hosts' session count and the stub wheel."""

from __future__ import annotations

import base64
import hashlib
import subprocess
import zipfile
from pathlib import Path

import pytest

from llmfleet import fleetconfig
from llmfleet.factbatch import batch_command, python_batch, split_output
from llmfleet.lab.hosts import count_sessions, set_light
from llmfleet.lab.lab import inotify_instances_needed
from llmfleet.lab.stubwheel import wheel_name, write
from llmfleet.manifest import ReleaseState
from llmfleet.servecheck import (
    PathWant,
    Seen,
    ServeWant,
    _path_problems,
    account_program,
    parse_account,
    parse_packages,
    parse_paths,
    parse_unit,
    paths_program,
    stale,
)
from llmfleet.servegroup import group_map


def sh(command: str) -> list[str]:
    """Run ``command`` as pyinfra would (``sh -c``); its stdout lines."""
    out = subprocess.run(["sh", "-c", command], capture_output=True, text=True, check=False)
    return out.stdout.splitlines()


def py(program: tuple[str, list[str]]) -> list[str]:
    """One probe program's output lines, run as the no-change probe runs it."""
    name = program[1][0]
    return split_output(sh(python_batch({name: program})))[name][1]


def test_the_account_probe_prints_what_getent_prints() -> None:
    passwd, group = parse_account(py(account_program("root")))
    assert passwd is not None and passwd[:4] == ["root", "x", "0", "0"]
    assert passwd[5] == "/root" and group is not None and group[:3] == ["root", "x", "0"]
    assert parse_account(py(account_program("no-such-user-here"))) == (None, None)


def test_a_batch_runs_every_section_once_and_keeps_each_status_and_output() -> None:
    heredoc = "python3 - <<'EOF'\nprint('from stdin')\nEOF"
    no_newline = "printf '{\"a\": 1}'"  # a marker file's text, read with cat
    found = split_output(
        sh(
            batch_command(
                {
                    "a": "echo one; echo two",
                    "fails": "echo partial; exit 3",
                    "doc": heredoc,
                    "bare": no_newline,
                }
            )
        )
    )
    assert found == {
        "a": (0, ["one", "two"]),
        "fails": (3, ["partial"]),
        "doc": (0, ["from stdin"]),
        "bare": (0, ['{"a": 1}']),
    }


def test_python_programs_share_one_interpreter_inside_a_batch() -> None:
    """Each program runs as __main__ with its own argv; its exit status and output are
    its own, and the batch around them splits into the programs' sections."""
    programs = {
        "argv": ("import sys\nprint(sys.argv[1:])", ["prog", "check", "--marker", "m"]),
        "main": ("import sys\nif __name__ == '__main__':\n    sys.exit(3)", ["p"]),
        "boom": ("print('before')\nraise ValueError('x')", ["p"]),
        "bare": ("import sys\nsys.stdout.write('{}')", ["p"]),
    }
    found = split_output(sh(batch_command({"first": "echo 1", "py": python_batch(programs)})))
    assert found == {
        "first": (0, ["1"]),
        "argv": (0, ["['check', '--marker', 'm']"]),
        "main": (3, []),
        "boom": (1, ["before"]),
        "bare": (0, ["{}"]),
    }


def test_a_section_cut_off_is_absent_and_stderr_stays_out() -> None:
    lines = sh(batch_command({"a": "echo x; echo noise >&2", "b": "echo y"}))
    assert split_output(lines[:-1]) == {"a": (0, ["x"])}  # b's end marker never came
    with pytest.raises(ValueError, match="section name"):
        batch_command({"a b": "true"})


def test_paths_probe_reads_mode_owner_type_and_content(tmp_path: Path) -> None:
    f, d = tmp_path / "unit", tmp_path / "dir"
    f.write_text("[Unit]\n")
    f.chmod(0o644)
    d.mkdir(mode=0o750)
    d.chmod(0o750)
    wants = (
        PathWant(str(f), "644", text=b"[Unit]\n"),
        PathWant(str(d), "750"),
        PathWant(str(tmp_path / "gone"), "600", text=b""),
    )
    seen = parse_paths(py(paths_program(wants)))
    assert seen[str(f)]["sha1"] == hashlib.sha1(b"[Unit]\n").hexdigest()
    assert seen[str(d)]["type"] == "directory" and seen[str(d)]["mode"] == "750"
    assert _path_problems(wants[0], seen.get(str(f))) == []
    assert _path_problems(wants[1], seen.get(str(d))) == []
    assert _path_problems(wants[2], seen.get(wants[2].path)) == [f"{wants[2].path}: missing"]
    f.chmod(0o600)
    f.write_text("[Unit]\nedited\n")
    again = parse_paths(py(paths_program(wants)))
    assert _path_problems(wants[0], again[str(f)]) == [
        f"{f}: mode 600, not 644",
        f"{f}: content differs",
    ]


def _want() -> ServeWant:
    return ServeWant(
        release="r1",
        paths=(PathWant("/etc/x", "600", "root", "root", b"x"),),
        user="llmfleet",
        venv_marker_path="/opt/v/.llmfleet-env",
        venv_marker='{"packages": ["a"]}',
        system_packages=("libnuma1",),
        port=8000,
        served_name="tiny",
    )


def _seen() -> Seen:
    passwd, group = parse_account(
        ["passwd:llmfleet:x:999:999::/var/lib/llmfleet:/usr/sbin/nologin", "group:llmfleet:x:999:"]
    )
    active, enabled = parse_unit(["ActiveState=active", "UnitFileState=enabled"])
    return Seen(
        listeners=[],
        uv=True,
        venv_marker='{"packages": ["a"]}\n',
        packages=parse_packages(["libnuma1 ii "]),
        snapshot={"ok": True},
        releases=ReleaseState(current="r1"),
        paths={
            "/etc/x": {
                "mode": "600",
                "user": "root",
                "group": "root",
                "type": "regular file",
                "sha1": hashlib.sha1(b"x").hexdigest(),
            }
        },
        passwd=passwd,
        group=group,
        active=active,
        enabled=enabled,
        models=["tiny"],
    )


def test_a_host_at_its_plan_is_current() -> None:
    assert stale(_want(), _seen()) == []


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"listeners": None}, "port 8000"),
        ({"listeners": [{"process": "nginx"}]}, "port 8000"),
        ({"uv": False}, "uv is not installed"),
        ({"venv_marker": "{}"}, "engine venv: marker differs"),
        ({"packages": parse_packages(["libnuma1 rc "])}, "system packages missing: libnuma1"),
        ({"snapshot": None}, "weights"),
        ({"releases": ReleaseState(current="r0")}, "release: current is r0"),
        ({"releases": None}, "release: current is None"),
        ({"paths": {}}, "/etc/x: missing"),
        ({"passwd": None}, "user llmfleet: missing"),
        ({"group": None}, "group llmfleet: missing"),
        ({"active": "failed"}, "llmfleet-serve: failed"),
        ({"enabled": "disabled"}, "not enabled"),
        ({"models": None}, "does not list 'tiny'"),
        ({"models": ["other"]}, "does not list 'tiny'"),
    ],
)
def test_any_difference_or_unread_section_is_stale(change: dict, reason: str) -> None:
    seen = _seen()
    for key, value in change.items():
        setattr(seen, key, value)
    why = stale(_want(), seen)
    assert len(why) == 1 and reason in why[0], why


def test_the_account_must_have_our_group_home_and_no_shell() -> None:
    seen = _seen()
    seen.passwd, seen.group = parse_account(
        ["passwd:llmfleet:x:999:100::/home/llmfleet:/bin/bash", "group:llmfleet:x:999:"]
    )
    assert stale(_want(), seen) == [
        "user llmfleet: primary group 100, not llmfleet (999)",
        "user llmfleet: home /home/llmfleet, not /var/lib/llmfleet",
        "user llmfleet: shell /bin/bash, not /usr/sbin/nologin",
    ]


def test_sessions_are_counted_from_sshd_verbose_lines() -> None:
    log = "\n".join(
        [
            "Accepted publickey for root from 10.213.0.1 port 50000 ssh2: ED25519 SHA256:x",
            "Starting session: command for root from 10.213.0.1 port 50000 id 0",
            "Starting session: command for root from 10.213.0.1 port 50000 id 1",
            "Starting session: subsystem 'sftp' for root from 10.213.0.1 port 50000 id 2",
            "Close session: user root from 10.213.0.1 port 50000 id 0",
        ]
    )
    assert count_sessions(log) == {"sessions": 3, "logins": 1}


def test_light_root_masks_units_and_back(tmp_path: Path) -> None:
    host = {"root": str(tmp_path)}
    (tmp_path / "etc/systemd/system").mkdir(parents=True)
    set_light(host, True)
    masked = tmp_path / "etc/systemd/system/dbus.service"
    assert masked.is_symlink() and str(masked.readlink()) == "/dev/null"
    conf = (tmp_path / "etc/ssh/sshd_config.d/llmfleet-light.conf").read_text()
    assert "UsePAM no" in conf and "LogLevel VERBOSE" in conf
    set_light(host, True)  # again: no change, no error
    set_light(host, False)
    assert not masked.exists() and not masked.is_symlink()
    assert not (tmp_path / "etc/ssh/sshd_config.d/llmfleet-light.conf").exists()


def test_the_stub_wheel_is_the_same_bytes_each_time_and_installable_shape(tmp_path: Path) -> None:
    first = write(tmp_path).read_bytes()
    assert write(tmp_path).read_bytes() == first
    with zipfile.ZipFile(tmp_path / wheel_name()) as zf:
        names = zf.namelist()
        record = zf.read("llmfleet_stubengine-1.0.dist-info/RECORD").decode()
        module = zf.read("llmfleet_stubengine.py")
    assert "llmfleet_stubengine.py" in names
    digest = hashlib.sha256(module).digest()
    assert base64.urlsafe_b64encode(digest).rstrip(b"=").decode() in record
    assert b"--served-model-name" in module


def test_group_map_is_one_pass_in_inventory_order() -> None:
    pairs = [("a", "g1"), ("b", None), ("c", "g2"), ("d", "g1")]
    assert group_map(pairs) == {"g1": ["a", "d"], "g2": ["c"]}
    # a generator: consumed once, as the rollback deploy gives it
    assert group_map(iter(pairs)) == {"g1": ["a", "d"], "g2": ["c"]}


def test_fleet_defaults_parallel_timeout_and_open_files() -> None:
    assert fleetconfig.parallel(500, cores=2, env={}) == 40  # pyinfra's 20 per core
    assert fleetconfig.parallel(4, cores=2, env={}) == 4
    assert fleetconfig.parallel(500, cores=2, env={"LLMFLEET_PARALLEL": "100"}) == 100
    assert fleetconfig.connect_timeout({}) == 15
    assert fleetconfig.connect_timeout({"LLMFLEET_CONNECT_TIMEOUT": "30"}) == 30
    assert fleetconfig.nofile_target(1024, 4096) == 4096
    assert fleetconfig.nofile_target(1024, 1 << 20) == fleetconfig.NOFILE_WANTED
    assert fleetconfig.nofile_target(200000, 1 << 20) == 200000  # never lowered

    class Config:
        PARALLEL = 0
        CONNECT_TIMEOUT = 10

    cfg = Config()
    fleetconfig.apply(cfg, env={})
    assert (cfg.PARALLEL, cfg.CONNECT_TIMEOUT) == (0, 15)  # pyinfra sizes it per run
    fleetconfig.apply(cfg, env={"LLMFLEET_PARALLEL": "8"})
    assert cfg.PARALLEL == 8


def test_the_inotify_limit_grows_with_the_lab_and_never_shrinks() -> None:
    assert inotify_instances_needed(64, 128) == 64 * 8 + 256  # the default 128: ~22 hosts
    assert inotify_instances_needed(2, 128) == 2 * 8 + 256
    assert inotify_instances_needed(4, 8192) == 8192
