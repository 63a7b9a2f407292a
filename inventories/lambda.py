"""Lambda Cloud inventory: hosts from the instance list (LAMBDA_API_KEY), grouped by
hardware, or a plain list (LLMFLEET_HOSTS='ip:b200 ...').  Group defaults (the
seed's recipe for each hardware) live in inventories/group_data/<hardware>.py.
"""

import sys

from llmfleet.lambda_cloud import InventoryError, load

try:
    _groups, _skipped = load()
except InventoryError as exc:  # a message, not a traceback
    sys.exit(f"inventories/lambda.py: {exc}")
for _line in _skipped:
    print(f"lambda inventory: skipped {_line}", file=sys.stderr)

b200 = _groups.get("b200", [])
h200 = _groups.get("h200", [])
h100 = _groups.get("h100", [])
gb200 = _groups.get("gb200", [])
