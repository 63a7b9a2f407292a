#!/usr/bin/env python3
"""Read-only: what the nvidia stack's verify step says about THIS machine.

Runs the stack role's own probe (``llmfleet.stacks.verify.state_command``) and the
device parser on this machine's real ``nvidia-smi -q -x``, plans the nvidia
stack for a hardware profile, and prints the plan and the verify problems.
Needs only pyyaml (no pyinfra), so it runs on a GPU box as it is:

    python3 scripts/stack-verify-here.py [HARDWARE] [DEVICES_PER_HOST]
"""

import platform
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from llmfleet.catalog import load
from llmfleet.hostfacts.devices import parse_fm_version, parse_nvidia_smi_xml  # noqa: E402
from llmfleet.hostfacts.system import Cpu, HostFacts, parse_os_release  # noqa: E402
from llmfleet.settings import Settings  # noqa: E402
from llmfleet.stacks.plan import load_stack, plan_stack  # noqa: E402
from llmfleet.stacks.verify import parse_state, state_command, verify  # noqa: E402


def sh(command: str) -> str:
    return subprocess.run(["bash", "-c", command], capture_output=True, text=True).stdout


def main() -> int:
    hardware = sys.argv[1] if len(sys.argv) > 1 else "h100"
    devices = int(sys.argv[2]) if len(sys.argv) > 2 else 1
    facts = HostFacts(
        os=parse_os_release(Path("/etc/os-release").read_text()),
        cpu=Cpu(platform.machine(), None, None, None, None, None, ()),
    )
    plan = plan_stack(
        platform.node() or "here",
        load_stack("nvidia"),
        facts,
        hardware=load().hw(hardware),
        settings=Settings(devices_per_host=devices),
    )
    print(f"os: {facts.os.pretty_name if facts.os else '?'}; arch {platform.machine()}")
    print(f"repo: {plan.repos[0].uri}")
    print(f"packages: {', '.join(p.spec for p in plan.packages)}")
    print(f"services: {', '.join(plan.services)}")
    acc = parse_nvidia_smi_xml(sh("nvidia-smi -q -x 2>/dev/null"))
    if acc:
        pm = ["on" if d.persistence_mode else "off" for d in acc.devices]
        print(
            f"nvidia-smi: {acc.count} x {', '.join(acc.names)}, driver {acc.driver_version}, "
            f"CUDA {acc.cuda_version}, persistence {pm}"
        )
    script = state_command(
        tuple(p.name for p in plan.packages), plan.services, (), plan.env_scripts
    )
    state = parse_state(sh(script).splitlines())
    fm = parse_fm_version(sh("nv-fabricmanager --version 2>/dev/null"))
    print(
        f"installed (dpkg): {state['installed'].packages or 'none of the plan'}; "
        f"holds: {sorted(state['installed'].holds) or 'none'}; container: {state['container']}"
    )
    problems = verify(plan, state["installed"], acc, fm)
    print("verify:" if problems else "verify: ok")
    for problem in problems:
        print(f"  - {problem}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
