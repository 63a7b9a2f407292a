"""Monitoring roles: the node exporter on every host; Prometheus and Alertmanager on
the monitoring host.  All three are Debian's own packages and their own units; we
own their ``/etc/default`` files (the daemons' arguments) and config files, and
restart a daemon only when one of its files changed, so a second deploy changes
nothing.

What they apply (targets, rules, config texts) is the fleet's monitoring plan
(``llmfleet/monitorplan.py``), built before any host is touched.
"""

from __future__ import annotations

import shlex
from io import StringIO

from pyinfra import host
from pyinfra.api import FactBase, deploy
from pyinfra.api.operation import OperationMeta
from pyinfra.facts.deb import DebPackages
from pyinfra.operations import apt, files, python, server, systemd

from llmfleet.monitorplan import (
    ALERTMANAGER,
    ALERTMANAGER_CONFIG,
    NODE_EXPORTER,
    PROMETHEUS,
    PROMETHEUS_CONFIG,
    RULES_FILE,
    MonitorPlan,
    Watched,
)

from .ready import wait_answers

TEXTFILE_DIR = "/var/lib/prometheus/node-exporter"
WEIGHTS_TEXTFILE = f"{TEXTFILE_DIR}/llmfleet-weights.prom"
# the server unit's restarts, for the UnitRestarting alert and `llmfleet top`
SYSTEMD_UNITS = r"llmfleet-.+\.service"


class MountPoint(FactBase):
    """The mount point of the file system that holds ``path`` (or would: the nearest
    existing parent), as the node exporter names it."""

    def command(self, path: str) -> str:
        return (
            f'p={shlex.quote(path)}; while [ ! -e "$p" ]; do p=$(dirname "$p"); done; '
            'findmnt -n -o TARGET --target "$p"'
        )

    def process(self, output: list[str]) -> str:
        return output[-1].strip() if output else "/"

    def default(self) -> str:
        return "/"


def defaults_file(args: list[str]) -> str:
    """A Debian ``/etc/default`` file: the daemon's arguments (its unit reads $ARGS)."""
    return (
        "# Written by llmfleet (deploys/monitor.py); the unit passes $ARGS to the daemon.\n"
        f'ARGS="{" ".join(args)}"\n'
    )


def node_exporter_args(port: int) -> list[str]:
    return [
        f"--web.listen-address=:{int(port)}",
        f"--collector.textfile.directory={TEXTFILE_DIR}",
        "--collector.systemd",
        f"--collector.systemd.unit-include={SYSTEMD_UNITS}",
        "--collector.systemd.enable-restarts-metrics",
    ]


def prometheus_args(port: int, retention: str) -> list[str]:
    return [
        f"--config.file={PROMETHEUS_CONFIG}",
        f"--web.listen-address=:{int(port)}",
        f"--storage.tsdb.retention.time={retention}",
    ]


def alertmanager_args(port: int) -> list[str]:
    return [
        f"--config.file={ALERTMANAGER_CONFIG}",
        f"--web.listen-address=:{int(port)}",
        # one Alertmanager per site: no gossip port to open
        "--cluster.listen-address=",
    ]


def weights_textfile(mountpoint: str) -> str:
    """What the WeightsDiskLow rule joins the node exporter's file systems with."""
    escaped = mountpoint.replace("\\", "\\\\").replace('"', '\\"')
    return (
        "# HELP llmfleet_weights_filesystem The file system that holds hf_home (llmfleet).\n"
        "# TYPE llmfleet_weights_filesystem gauge\n"
        f'llmfleet_weights_filesystem{{mountpoint="{escaped}"}} 1\n'
    )


def _install(packages: list[str], what: str) -> list[OperationMeta]:
    """Debian's packages, installed and held (apt lists refreshed only to install)."""
    missing = [p for p in packages if p not in host.get_fact(DebPackages)]
    if not missing:
        return []
    return [
        apt.packages(
            name=f"{what} (Debian: {', '.join(missing)})",
            packages=missing,
            update=True,
            cache_time=3600,  # the server host's second install needs no second update
            no_recommends=True,
        ),
        server.shell(
            name=f"Hold {', '.join(missing)}", commands=["apt-mark hold " + " ".join(missing)]
        ),
    ]


def _daemon(
    unit: str, restart_on: list[OperationMeta], check_on: list[OperationMeta], url: str, what: str
) -> None:
    """Enabled and running; restarted when one of ``restart_on`` changed; then, if
    anything changed (``check_on`` too: a first install), it must answer ``url``."""
    running = systemd.service(name=f"{what} running", service=unit, running=True, enabled=True)
    restarted = systemd.service(
        name=f"{what} picks up its configuration",
        service=unit,
        restarted=True,
        _if=lambda: any(op.did_change() for op in restart_on),
    )
    python.call(
        name=f"{what} answers",
        function=wait_answers,
        url=url,
        unit=unit,
        what=what,
        _if=lambda: any(op.did_change() for op in (running, restarted, *restart_on, *check_on)),
    )


@deploy("Node exporter")
def node_exporter(me: Watched) -> None:
    s = me.settings
    installed = _install([NODE_EXPORTER], "Node exporter")
    args = files.put(
        name="Node exporter arguments (systemd collector, textfile directory)",
        src=StringIO(defaults_file(node_exporter_args(s.node_exporter_port))),
        dest=f"/etc/default/{NODE_EXPORTER}",
        mode="644",
    )
    textfile = files.put(
        name="Where the weights live (for WeightsDiskLow)",
        src=StringIO(weights_textfile(host.get_fact(MountPoint, path=s.hf_home))),
        dest=WEIGHTS_TEXTFILE,
        mode="644",
    )
    _daemon(
        f"{NODE_EXPORTER}.service",
        [args],
        [*installed, textfile],
        f"http://127.0.0.1:{s.node_exporter_port}/metrics",
        "Node exporter",
    )


@deploy("Prometheus and Alertmanager")
def prometheus_server(plan: MonitorPlan) -> None:
    s = plan.server.settings
    installed = _install([PROMETHEUS, ALERTMANAGER], "Prometheus and Alertmanager")

    def put(text: str, dest: str, what: str) -> OperationMeta:
        return files.put(name=what, src=StringIO(text), dest=dest, mode="644")

    am = [
        put(
            defaults_file(alertmanager_args(s.alertmanager_port)),
            f"/etc/default/{ALERTMANAGER}",
            "Alertmanager arguments",
        ),
        put(plan.alertmanager_yml, ALERTMANAGER_CONFIG, "Alertmanager routes"),
    ]
    _daemon(
        f"{ALERTMANAGER}.service",
        am,
        installed,
        f"http://127.0.0.1:{s.alertmanager_port}/-/ready",
        "Alertmanager",
    )
    prom = [
        put(
            defaults_file(prometheus_args(s.prometheus_port, s.prometheus_retention)),
            f"/etc/default/{PROMETHEUS}",
            "Prometheus arguments",
        ),
        put(plan.rules_yml, RULES_FILE, f"Alert rules ({plan.rules_yml.count('- alert:')} rules)"),
        put(plan.prometheus_yml, PROMETHEUS_CONFIG, f"Scrape targets ({len(plan.targets)})"),
    ]
    _daemon(
        f"{PROMETHEUS}.service",
        prom,
        installed,
        f"http://127.0.0.1:{s.prometheus_port}/-/ready",
        "Prometheus",
    )
