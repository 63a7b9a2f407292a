"""The local lab (``llmfleet lab up``): systemd-nspawn hosts reachable over SSH.

Hosts get the ``cpu`` hardware profile and the lab recipe; the Hub endpoint
and the wheelhouse are the lab's own side services, so nothing leaves the
machine.  Host keys are checked against the lab's known_hosts file.
"""

import sys

from llmfleet.lab.inventory import lab_hosts

try:
    lab = lab_hosts()
except RuntimeError as exc:  # no lab running: say how to start one
    sys.exit(f"inventories/lab.py: {exc}")
