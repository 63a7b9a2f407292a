"""The local lab with a router: the last lab host routes, the others serve.

    llmfleet lab up --hosts 3
    pyinfra inventories/lab_router.py deploys/serve.py      # lab1, lab2 (lab3 serves nothing)
    pyinfra inventories/lab_router.py deploys/router.py     # smg on lab3, in front of lab1 and lab2
    llmfleet rollout inventories/lab_router.py --data flag.--max-num-seqs=8
    llmfleet status inventories/lab_router.py

The router host gets ``router: true`` and no recipe; the serving hosts are
the lab's own (``inventories/lab.py``).  They all share one endpoint key (smg
sends its key to every server): the router host's, generated once on this
machine like any ``api_key: true`` key (``LLMFLEET_SECRETS_DIR``, 0600).
The router checks health every 2 s so the lab tests see it act within seconds.
"""

import sys

from llmfleet.apikeys import secrets_dir
from llmfleet.lab.inventory import lab_hosts
from llmfleet.router import router_key
from llmfleet.settings import Settings

try:
    _hosts = lab_hosts()
except RuntimeError as exc:  # no lab running: say how to start one
    sys.exit(f"inventories/lab_router.py: {exc}")
if len(_hosts) < 2:
    sys.exit("inventories/lab_router.py: needs 2 lab hosts or more (llmfleet lab up --hosts 4)")

_name, _data = _hosts[-1]
router_key(_name, Settings(api_key=True))  # made once, then reused
_key = {"api_key_file": str(secrets_dir() / f"{_name}.api-key")}
servers = [(name, {**data, **_key}) for name, data in _hosts[:-1]]
routers = [(_name, {**_data, **_key, "recipe": None, "router": True, "router_health_interval": 2})]
