"""Onboard deploy: make a bare host ready for the serve deploy. Per host, in order:

    pyinfra inventories/lambda.py deploys/onboard.py [--data tuning_strict=true]

1. validate (``roles/plan.py`` ``onboarding()``): the hardware profile must be
   known; the recipe is optional (without one the host gets the baseline
   tuning), but a recipe that is set must plan cleanly. Errors fail the host
   before anything touches it.
2. accelerator stack (``roles/stack.py``, pins in ``files/stacks/``): the
   vendor's apt repositories and pinned, held packages (NVIDIA, ROCm) or
   checksummed installers (Ascend CANN), services, groups, a reboot when a
   kernel module changed, then a verify step (devices seen, driver and fabric
   manager versions, holds, services, the recipe's env scripts).  Set
   ``accelerator_stack: none`` for images that come with their drivers.
3. host tuning (``roles/tuning.py``): sysctls in /etc/sysctl.d/90-llmfleet.conf,
   the CPU governor and the scheduler migration cost from a oneshot unit.

The stack goes first because it may reboot the host.  The summary at the end
lists every host, the stack outcome, and knob by knob what tuning did and
why a knob was skipped.
"""

from pyinfra import host

from roles import summary
from roles.plan import OnboardPlan, onboarding
from roles.run import record
from roles.stack import stack_from_data
from roles.tuning import host_tuning_from_settings


def onboard(plan: OnboardPlan) -> None:
    rendered = plan.rendered
    record(host.name).recipe = plan.recipe.id if plan.recipe else "-"
    stack_from_data(plan)
    host_tuning_from_settings(
        plan.recipe.id if plan.recipe else None,
        rendered.sysctl if rendered else None,
        rendered.cpu_governor if rendered else None,
        plan.settings,
    )


summary.register("llmfleet onboard")
_plan = onboarding()
if _plan is not None:
    onboard(_plan)
