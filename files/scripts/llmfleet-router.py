#!/usr/bin/env python3
"""Start smg's router with the endpoint key from the environment, not from argv.

smg takes its key only as ``--api-key KEY``, where every local user reads it in
``ps``.  This launcher parses the same arguments with smg's own parser, sets
the key from the variable named below (the unit's 0600 EnvironmentFile holds
it) and starts the router in this process with smg's own ``launch_router``:
no flag of ours, no router of ours.  Installed by deploys/router.py.
"""

import os
import sys

from smg.launch_router import launch_router, parse_router_args

KEY_ENV = "LLMFLEET_ROUTER_API_KEY"


def main() -> None:
    if any(a == "--api-key" or a.startswith("--api-key=") for a in sys.argv[1:]):
        sys.exit(f"llmfleet-router: the key goes in {KEY_ENV}, never in argv")
    args = parse_router_args(sys.argv[1:])
    key = os.environ.pop(KEY_ENV, "").strip()
    if key:
        args.api_key = key
    launch_router(args)


if __name__ == "__main__":
    main()
