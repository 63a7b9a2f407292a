"""``python3 -m llmfleet``: the same as the ``llmfleet`` command."""

import sys

from .cli import main

sys.exit(main())
