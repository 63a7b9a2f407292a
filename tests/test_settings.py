"""The host settings schema: every key typed, unknown keys and bad values refused per host."""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import pytest
from conftest import cli

from llmfleet.settings import (
    Settings,
    parse_settings,
    schema,
    schema_markdown,
    settings_from,
)

ROOT = Path(__file__).resolve().parent.parent


def problems(data: dict) -> list[str]:
    return [str(p) for p in parse_settings("gpu1", data)[1]]


def test_typo_names_the_host_the_key_and_the_closest_key() -> None:
    (text,) = problems({"prot": 8001})
    assert text.startswith("gpu1: prot: unknown key")
    assert "did you mean port?" in text
    (text,) = problems({"health_timout": 10})
    assert "did you mean health_timeout?" in text
    (text,) = problems({"flags.--x": 1})  # the prefix is flag.
    assert "did you mean flag.?" in text or "did you mean flags?" in text


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"health_timeout": "ten"}, "health_timeout: 'ten': expected an integer"),
        ({"health_timeout": True}, "health_timeout: True: expected an integer"),
        ({"health_timeout": 0}, "health_timeout: 0: must be at least 1"),
        ({"port": 70000}, "port: 70000: must be at most 65535"),
        ({"weights_verify": "maybe"}, "weights_verify: 'maybe': expected true or false"),
        ({"runtime": "podman"}, "runtime: 'podman': expected one of venv, docker"),
        ({"stack_reboot": "sometimes"}, "expected one of auto, never, always"),
        ({"weights_include": {"a": 1}}, "weights_include: {'a': 1}: expected a list"),
        ({"vendor_mirrors": "http://x"}, "vendor_mirrors: 'http://x': expected a mapping"),
        ({"recipe": ["a"]}, "recipe: ['a']: expected a string"),
        ({"release_keep": 1.5}, "release_keep: 1.5: expected an integer"),
    ],
)
def test_bad_values_are_named(data: dict, message: str) -> None:
    (text,) = problems(data)
    assert text.startswith("gpu1: ") and message in text


def test_values_are_coerced_once_from_cli_strings() -> None:
    s = settings_from(
        {
            "port": "8001",
            "health_timeout": "60",
            "weights_verify": "yes",
            "systemd_hardening": "false",
            "host_memory_gb": "12.5",
            "weights_include": "*.json",
            "release_keep": 3.0,
        }
    )
    assert (s.port, s.health_timeout, s.weights_verify, s.systemd_hardening) == (
        8001,
        60,
        True,
        False,
    )
    assert s.host_memory_gb == 12.5 and s.weights_include == ["*.json"] and s.release_keep == 3


def test_defaults_and_none_means_default() -> None:
    s = settings_from({"health_timeout": None, "hf_home": None})
    assert s == Settings()
    assert (s.health_timeout, s.hf_home, s.service_user, s.release_keep) == (
        900,
        "/var/lib/llmfleet/hf",
        "llmfleet",
        5,
    )


def test_pyinfra_and_user_keys_pass_through() -> None:
    data = {
        "ssh_hostname": "10.0.0.1",
        "ssh_strict_host_key_checking": "yes",
        "_sudo": True,
        "_env": {"A": "1"},
        "fake_responses": {},
        "docker_identifier": "x",
        "x_rack": "r12",
        "x_owner": {"team": "ml"},
    }
    assert problems(data) == []


def test_flag_env_overlay_keys_flat_and_nested_merge() -> None:
    s = settings_from(
        {
            "flag.--max-num-seqs": 64,
            "flags": {"--enforce-eager": True, "--max-num-seqs": 8},
            "env.A": "1",
            "overlays": ["tool-calling"],
        }
    )
    # the flat key wins over the mapping: it is the more specific (--data) one
    assert s.flags == {"--enforce-eager": "true", "--max-num-seqs": "64"}
    assert s.env == {"A": "1"} and s.overlays == {"tool-calling": "true"}
    assert s.overrides() == {
        "flag.--enforce-eager": "true",
        "flag.--max-num-seqs": "64",
        "env.A": "1",
        "overlay.tool-calling": "true",
    }


def test_every_key_has_a_doc_and_a_deploy() -> None:
    for name, f in schema().items():
        assert f.metadata["doc"], name
        assert f.metadata["deploys"], name


def test_the_docs_table_is_generated_from_the_schema() -> None:
    text = (ROOT / "docs" / "settings.md").read_text()
    body = text.split("<!-- generated: llmfleet settings --markdown -->\n", 1)[1]
    body = body.split("<!-- end generated -->", 1)[0]
    assert body == schema_markdown(), "regenerate: python3 scripts/gen-settings-doc.py"
    documented = set(re.findall(r"^\| `([a-z0-9_]+)` \|", body, re.M))
    assert documented == set(schema())


def test_no_host_data_read_outside_the_schema() -> None:
    """Roles and deploys read settings, never raw host data (pyinfra's address aside)."""
    offenders = []
    for path in [*ROOT.glob("roles/*.py"), *ROOT.glob("deploys/*.py")]:
        for n, line in enumerate(path.read_text().splitlines(), 1):
            for key in re.findall(r"data\.get\(\"([a-z_]+)\"", line):
                if key != "ssh_hostname":
                    offenders.append(f"{path.name}:{n}: {key}")
    assert offenders == []


def _inventory(tmp_path: Path, hosts: str) -> str:
    path = tmp_path / "inventory.py"
    path.write_text(textwrap.dedent(hosts))
    return str(path)


def test_plan_fails_only_the_bad_host_without_connecting(tmp_path: Path) -> None:
    inv = _inventory(
        tmp_path,
        """
        base = {"hardware": "cpu", "recipe": "lab-cpu-vllm-tiny"}
        hosts = [
            ("good", {**base, "ssh_hostname": "10.9.9.1"}),
            ("typo", {**base, "ssh_hostname": "10.9.9.2", "prot": 8001}),
            ("bad", {**base, "ssh_hostname": "10.9.9.3", "health_timeout": "ten"}),
        ]
        """,
    )
    rc, out, err = cli("plan", inv, "--json", cwd=ROOT)
    assert rc == 2, err
    import json

    rows = {r["host"]: r for r in json.loads(out)}
    assert rows["good"]["ok"] and rows["good"]["argv"]
    assert not rows["typo"]["ok"] and not rows["bad"]["ok"]
    (typo,) = rows["typo"]["problems"]
    assert typo["field"] == "prot" and "did you mean port?" in typo["fix"]
    (bad,) = rows["bad"]["problems"]
    assert bad["field"] == "health_timeout" and "expected an integer" in bad["message"]


def test_inventory_errors_are_messages_not_tracebacks(tmp_path: Path) -> None:
    env = {"LAMBDA_API_KEY": "", "LLMFLEET_HOSTS": "", "LLMFLEET_HOSTS_FILE": ""}
    for argv in (
        ("plan", "inventories/lambda.py"),
        ("status", "inventories/lambda.py"),
        ("plan", str(tmp_path / "missing.py")),
    ):
        rc, _, err = cli(*argv, cwd=ROOT, env=env)
        assert rc == 2, argv
        assert "Traceback" not in err, err
        assert "error" in err


def test_help_hides_nothing_broken() -> None:
    rc, out, _ = cli("--help", cwd=ROOT)
    assert rc == 0 and "SUPPRESS" not in out and "settings" in out
    rc, out, _ = cli("recipes", "render", "--help", cwd=ROOT)
    assert rc == 0 and "health_timeout" not in out and "port " in out and "flag.NAME" in out


def test_a_connector_namespace_does_not_swallow_our_keys() -> None:
    """``docker_*`` is both pyinfra's docker connector and our container settings."""
    s = settings_from({"docker_identifier": "abc", "docker_data_root": "/nvme/docker"})
    assert s.docker_data_root == "/nvme/docker"
    (text,) = problems({"docker_data_rot": "/x"})
    assert "did you mean docker_data_root?" in text
