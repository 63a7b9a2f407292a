"""pyinfra's settings for every run from this checkout (pyinfra reads ./config.py):
the fleet defaults of ``llmfleet/fleetconfig.py``: connect timeout, hosts at once
(``LLMFLEET_PARALLEL``), a raised open-files limit.  docs/scale.md says why."""

from pyinfra import config

from llmfleet.fleetconfig import apply

apply(config)
