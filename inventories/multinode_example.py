"""Two GB200 trays as one multi-node server (vllm-gb200-bf16-2node: TP8 over 2 x 4 GPUs).

    LLMFLEET_GB200_PAIR="10.0.0.1 10.0.0.2" llmfleet plan inventories/multinode_example.py

The two addresses (SSH, in rank order: the first is rank 0, the head) come from
``LLMFLEET_GB200_PAIR``; ``LLMFLEET_GB200_NIC`` optionally names the NIC of the
network the two nodes talk over (NCCL_SOCKET_IFNAME, GLOO_SOCKET_IFNAME).  The
pyinfra group's data carries ``serve_group``, so the group's hosts are the server:
ranks follow the order below and rank 0's address is the master address, with no
``node_rank`` or ``master_addr`` typed per host (docs/multinode.md).
"""

import os
import sys

_ENV = "LLMFLEET_GB200_PAIR"
_addresses = os.environ.get(_ENV, "").replace(",", " ").split()
if len(_addresses) != 2:
    sys.exit(
        f"inventories/multinode_example.py: set {_ENV} to the two GB200 hosts' addresses, "
        f'rank 0 first: {_ENV}="10.0.0.1 10.0.0.2" (got {len(_addresses)})'
    )

_data = {
    "hardware": "gb200",
    "recipe": "vllm-gb200-bf16-2node",
    "serve_group": "gb200-pair",
}
if os.environ.get("LLMFLEET_GB200_NIC"):
    _data["network_interface"] = os.environ["LLMFLEET_GB200_NIC"]

gb200_pair = (
    [(f"gb200-{rank}", {"ssh_hostname": address}) for rank, address in enumerate(_addresses)],
    _data,
)
