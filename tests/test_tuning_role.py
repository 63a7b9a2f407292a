"""The tuning role through deploys/onboard.py on pyinfra's @fake connector (nothing is touched).

Canned fact output stands in for hosts: a bare 6.8 machine, the same machine
tuned (a re-run must change nothing), one whose swappiness drifted, a
container, and a VM in strict mode (``fakehosts.py`` runs pyinfra).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from fakehosts import outcome, run_deploy

from llmfleet import tuning as tn
from llmfleet.hostfacts.framing import split_sections
from llmfleet.hostfacts.tuning import parse_tuning

OPS = {
    "conf": f"Host tuning | sysctls in {tn.SYSCTL_CONF}",
    "no conf": f"Host tuning | No {tn.SYSCTL_CONF}",
    "apply": "Host tuning | Apply sysctls now",
    "unit": f"Host tuning | {tn.UNIT_NAME} (governor, scheduler knob at boot)",
    "reload": "Host tuning | Reload systemd",
    "restart": f"Host tuning | Re-apply {tn.UNIT_NAME}",
    "start": f"Host tuning | {tn.UNIT_NAME} enabled and started",
}


def _fact(swappiness: str, numa: str, debugfs: str, governor: str, unit: str, ct: str = "") -> str:
    return "\n".join(
        [
            "=== $ kernel",
            "6.8.0-45-generic",
            "=== $ container",
            ct or "none",
            "=== $ proc_sys_writable",
            "yes",
            "=== $ sysctl",
            f"kernel.numa_balancing\trw\t{numa}",
            f"vm.swappiness\trw\t{swappiness}",
            "=== $ debugfs",
            "exists",
            "writable",
            f"value {debugfs}",
            "=== $ cpufreq_driver",
            "intel_pstate",
            "=== $ governors",
            governor,
            "=== $ available_governors",
            "performance powersave",
            "=== $ cpufreq_writable",
            "yes",
            "=== $ unit",
            unit,
        ]
    )


BARE = _fact("60", "1", "500000", "powersave", "inactive")
TUNED = _fact("0", "0", "50000", "performance", "present\nactive")
DRIFTED = _fact("60", "0", "50000", "performance", "present\nactive")
NSPAWN = _fact("60", "1", "500000", "powersave", "inactive", ct="systemd-nspawn")
VM = "=== $ kernel\n6.1.0-18-amd64\n=== $ sysctl\nvm.swappiness\trw\t60\n=== $ unit\ninactive"


def _installed(path: str, text: str, kind: str = "-") -> dict:
    """Fake responses for a file pyinfra finds in place with exactly ``text``."""
    stat = f"user=root group=root mode={kind}rw-r--r-- atime=0 mtime=0 ctime=0 size=1 '{path}'"
    stat_cmd = "stat -c 'user=%U group=%G mode=%A atime=%X mtime=%Y ctime=%Z size=%s %N'"
    out = {f"{stat_cmd} {path} ": stat}
    if text:
        out[f"sha1sum {path} "] = f"{hashlib.sha1(text.encode()).hexdigest()}  {path}"
    return out


def _tuned_files() -> dict:
    plan = tn.plan_tuning("x", parse_tuning(split_sections(TUNED)), tn.Wanted.merge())
    return {
        **_installed(tn.SYSCTL_CONF, plan.sysctl_conf),
        **_installed(tn.UNIT_FILE, tn.unit_text(plan)),
        **_installed("/etc/sysctl.d", "", "d"),
        **_installed("/etc/systemd/system", "", "d"),
        "--property SubState": [f"Id={tn.UNIT_NAME}", "SubState=exited"],
        "--property UnitFileState": [f"Id={tn.UNIT_NAME}", "UnitFileState=enabled"],
    }


def _run(tmp_path: Path, hosts: dict[str, tuple[str, dict, dict]]) -> dict:
    """Run the onboard deploy on fake hosts ``{name: (fact text, extra responses, data)}``."""
    return run_deploy(
        tmp_path,
        "deploys/onboard.py",
        {
            # the stack role has its own tests
            name: (
                {"=== $ sysctl": fact.splitlines(), **extra},
                {"accelerator_stack": "none", **data},
            )
            for name, (fact, extra, data) in hosts.items()
        },
    )


def _outcome(result: dict, host: str) -> dict[str, str]:
    return outcome(result, host, {v: k for k, v in OPS.items()})


def test_first_run_second_run_and_drift(tmp_path: Path) -> None:
    h200 = {"hardware": "h200"}
    result = _run(
        tmp_path,
        {
            "bare": (BARE, {}, h200),
            "tuned": (TUNED, _tuned_files(), h200),
            "drifted": (DRIFTED, _tuned_files(), h200),
        },
    )
    assert result["results"]["failed_hosts"] == []
    changed = {"conf", "apply", "unit", "reload", "start"}
    assert _outcome(result, "@fake/bare") == {k: "changed" for k in changed}
    # the tuned host: nothing to do anywhere
    assert set(_outcome(result, "@fake/tuned").values()) == {"no change"}
    drifted = _outcome(result, "@fake/drifted")
    assert drifted.pop("apply") == "changed"
    assert set(drifted.values()) == {"no change"}
    assert "host tuning" in result["stdout"]


def test_container_and_strict_vm(tmp_path: Path) -> None:
    result = _run(
        tmp_path,
        {
            "lab1": (NSPAWN, {}, {"hardware": "cpu", "recipe": "lab-cpu-vllm-tiny"}),
            "vm1": (VM, {}, {"hardware": "h100", "tuning_strict": True}),
        },
    )
    # a container: kernel-global knobs are left alone, no file, no unit
    assert _outcome(result, "@fake/lab1") == {"no conf": "no change"}
    # strict: the VM has no cpufreq and no scheduler knob, so it fails before any change
    assert result["results"]["failed_hosts"] == ["@fake/vm1"]
    outcome = _outcome(result, "@fake/vm1")
    assert list(outcome.values()) == ["error"]
    (failed,) = outcome
    assert "vm1: tuning kernel.numa_balancing: unsupported: no kernel.numa_balancing" in failed
