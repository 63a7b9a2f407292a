"""The local lab as accelerator hosts: lab1 NVIDIA (4 x H200), lab2 ROCm, lab3 Ascend.

    llmfleet lab up --hosts 3
    pyinfra inventories/lab_stacks.py deploys/onboard.py

The lab has no GPUs: the stack role installs STAND-INS from the lab's own
signed apt repositories and installer directory (``llmfleet/lab/vendor.py``),
whose tools print outputs recorded on real machines (``tests/fixtures/hosts``).
``devices_per_host`` matches those recordings: a 4-GPU H200 VM, one AMD
card, and the 3 NPU rows of the public ``npu-smi`` excerpt.  No recipe is
set: onboarding prepares the machine, it does not serve.  lab1 reboots when
its driver package is installed (``stack_reboot: always``; the lab's hosts
are booted containers that can reboot), the others report the reboot as
skipped, as containers should.
"""

import sys

from llmfleet.lab.inventory import lab_hosts

STACK_HOSTS = {
    # stack_reboot=always: reboot this container when the driver package is installed,
    # so the lab runs the reboot-and-wait path (a container loads no module, of course)
    "lab1": {"hardware": "h200", "devices_per_host": 4, "stack_reboot": "always"},
    "lab2": {"hardware": "mi300x", "devices_per_host": 1},
    "lab3": {"hardware": "atlas-800i-a3", "devices_per_host": 3},
}

try:
    _hosts = dict(lab_hosts())
except RuntimeError as exc:
    sys.exit(f"inventories/lab_stacks.py: {exc}")
if not STACK_HOSTS.keys() <= _hosts.keys():
    sys.exit("inventories/lab_stacks.py: needs lab1..lab3: run `llmfleet lab up --hosts 3`")

stacks = [(name, {**_hosts[name], "recipe": None, **extra}) for name, extra in STACK_HOSTS.items()]
