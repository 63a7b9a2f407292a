"""Control-node defaults for large fleets: how many hosts at once, how long a connect
may take, how many files the control node may hold open.

pyinfra reads ``config.py`` from the directory it runs in; this repository's
``config.py`` calls :func:`apply`, so every ``pyinfra INVENTORY deploys/...`` run
from the checkout gets these, and ``llmfleet status``/``logs``/... use the same
concurrency.  Each is a control-node environment variable (the host data schema,
``llmfleet/settings.py``, is for hosts):

``LLMFLEET_PARALLEL``
    hosts worked on at once (connects included).  Default: pyinfra's own rule,
    20 per control-node core, never more than the hosts.  pyinfra runs every SSH
    session of a run in one process (gevent, paramiko): the key exchanges of a
    connect wave share one core, so more at once does not finish sooner
    (docs/scale.md has the numbers).
``LLMFLEET_CONNECT_TIMEOUT``
    seconds for one host's SSH connect (default 15, pyinfra's is 10): a wave of
    ``PARALLEL`` handshakes is CPU-bound on the control node, so the last host of
    a wave waits for the others' handshakes before its own; a dead host still
    costs only its own slot, never the run.
open files
    pyinfra keeps every host's connection open for the whole run (about three
    descriptors each), so 500 hosts need ~1,500 descriptors where Debian's soft
    limit is 1,024: :func:`raise_nofile` lifts the soft limit to the hard one
    (capped at ``NOFILE_WANTED``).

``--fail-percent`` (pyinfra's) is left unset on purpose: it stops every host of
the run mid-deploy once that share failed, and a host cut off between "unit
written" and "health gate" is the worst state to leave.  Each host fails on its
own and reverts itself; stopping *between* batches is ``llmfleet rollout
--max-fail`` (a count or ``N%`` of the fleet) or ``--fail-percent N``, which
means the same as ``--max-fail N%``.
"""

from __future__ import annotations

import os
import resource

PARALLEL_PER_CORE = 20
DEFAULT_CONNECT_TIMEOUT = 15
NOFILE_WANTED = 65536


def parallel(hosts: int, cores: int | None = None, env: dict[str, str] | None = None) -> int:
    """Hosts at once for a run over ``hosts`` hosts (at least 1)."""
    env = os.environ if env is None else env
    if env.get("LLMFLEET_PARALLEL"):
        wanted = int(env["LLMFLEET_PARALLEL"])
    else:
        wanted = PARALLEL_PER_CORE * (cores or os.cpu_count() or 1)
    return max(1, min(wanted, max(hosts, 1)))


def connect_timeout(env: dict[str, str] | None = None) -> int:
    env = os.environ if env is None else env
    return int(env.get("LLMFLEET_CONNECT_TIMEOUT") or DEFAULT_CONNECT_TIMEOUT)


def nofile_target(soft: int, hard: int, wanted: int = NOFILE_WANTED) -> int:
    """The soft open-files limit to set: ``wanted``, within the hard limit, never lower."""
    ceiling = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    return max(soft, ceiling)


def raise_nofile() -> int:
    """Lift this process's soft open-files limit (children inherit it); the new limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = nofile_target(soft, hard)
    if target != soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return target


def apply(config, env: dict[str, str] | None = None) -> None:
    """Set pyinfra's ``config`` (see the module doc).  pyinfra runs ``config.py`` before
    it loads the inventory, so the host count is not known here: with
    ``LLMFLEET_PARALLEL`` unset, ``PARALLEL`` stays 0 and pyinfra applies the same rule
    as :func:`parallel` itself once it knows the hosts; ``--parallel`` still wins."""
    env = os.environ if env is None else env
    raise_nofile()
    if env.get("LLMFLEET_PARALLEL") and not config.PARALLEL:
        config.PARALLEL = max(1, int(env["LLMFLEET_PARALLEL"]))
    config.CONNECT_TIMEOUT = connect_timeout(env)
