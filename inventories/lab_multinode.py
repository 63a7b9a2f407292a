"""The local lab's first two hosts as ONE vLLM server: a serving group (serve_group
``lab-pair``), vLLM's multi-node data parallel on CPU, rank 0 (lab1) serves the API.

    llmfleet lab up --hosts 2
    pyinfra inventories/lab_multinode.py deploys/serve.py
    llmfleet status inventories/lab_multinode.py

Ranks follow inventory order, the master address is lab1's lab address, each
host's NIC is read from the host.  See docs/multinode.md.
"""

import sys

from llmfleet.lab.inventory import multinode_hosts

try:
    lab_pair = multinode_hosts()
except RuntimeError as exc:  # no lab running: say how to start one
    sys.exit(f"inventories/lab_multinode.py: {exc}")
