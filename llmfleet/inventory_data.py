"""``python -m llmfleet.inventory_data INVENTORY``: hosts and their data as JSON.

The on-call commands read inventories through this child process: importing
pyinfra's CLI package gevent-patches the importing process, which deadlocks
the SSH threads of the parent.
"""

from __future__ import annotations

import json
import sys

from .errors import LlmfleetError
from .plan import load_inventory_data


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m llmfleet.inventory_data INVENTORY", file=sys.stderr)
        return 2
    try:
        hosts = [[name, data] for name, _, data in load_inventory_data(argv[0])]
    except LlmfleetError as exc:
        print(exc, file=sys.stderr)
        return 2
    print(json.dumps(hosts, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
