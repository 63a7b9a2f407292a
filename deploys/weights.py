"""Weights only: resolve the recipe's model revision once, pull it on every host.

    pyinfra inventories/lab.py deploys/weights.py [--data weights_verify=true]

The same role the serve deploy runs, alone: to pre-stage weights on a new
fleet before the engine, to verify checksums on demand, or to repair a cache.
"""

from roles import summary
from roles.plan import pull_only
from roles.weights import weights

summary.register("llmfleet weights")
_plan = pull_only()
if _plan is not None:
    weights(_plan.weights, ops=[])
