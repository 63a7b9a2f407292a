"""The local lab with a router: the last lab host routes, the others serve.

    llmfleet lab up --hosts 4
    pyinfra inventories/lab_router.py deploys/serve.py      # lab1..lab3 (lab4 serves nothing)
    pyinfra inventories/lab_router.py deploys/router.py     # smg on lab4, in front of lab1..lab3
    llmfleet rollout inventories/lab_router.py --data flag.--max-num-seqs=8

The router host gets ``router: true`` and no recipe; the serving hosts are
the lab's own (``inventories/lab.py``).  The router checks health every 2 s
(``router_health_interval``) so the lab tests see it act within seconds.
"""

import sys

from llmfleet.lab.inventory import lab_hosts

try:
    _hosts = lab_hosts()
except RuntimeError as exc:  # no lab running: say how to start one
    sys.exit(f"inventories/lab_router.py: {exc}")
if len(_hosts) < 2:
    sys.exit("inventories/lab_router.py: needs 2 lab hosts or more (llmfleet lab up --hosts 4)")

_name, _data = _hosts[-1]
servers = _hosts[:-1]
routers = [(_name, {**_data, "recipe": None, "router": True, "router_health_interval": 2})]
