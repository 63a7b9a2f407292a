"""The local lab's light hosts (``llmfleet lab up --light N``): systemd and sshd
only, serving the STAND-IN stub engine (recipe ``lab-cpu-stub``), for measuring
what the toolkit itself costs per host (``bench/control_plane.py``, docs/scale.md).

    llmfleet lab up --light 16
    pyinfra inventories/lab_light.py deploys/serve.py
"""

import sys

from llmfleet.lab.inventory import light_hosts

try:
    lab = light_hosts()
except RuntimeError as exc:  # no light lab running: say how to start one
    sys.exit(f"inventories/lab_light.py: {exc}")
