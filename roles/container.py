"""Container engine role (docker recipes): docker installed at its pin and held, the
daemon configured, the release's image present by digest.

What to apply comes from ``llmfleet/containers.py`` (``files/runtimes/docker.yaml``
plus the host's settings); the image reference is the plan's, pinned by digest
on the control node.  One fact reads everything this role decides on, so an
unchanged host costs one round trip and no operation.  The image is pulled
here, never by the unit (``docker run --pull never``): a restart during a
registry outage must not fail, and a rollback must not need the network.
"""

from __future__ import annotations

import shlex
from io import StringIO

from pyinfra import host
from pyinfra.api import FactBase, deploy
from pyinfra.api.operation import OperationMeta
from pyinfra.operations import apt, files, server, systemd

from llmfleet.containers import ContainerPlan, container_plan
from llmfleet.settings import Settings

DAEMON_JSON = "/etc/docker/daemon.json"


class ContainerState(FactBase):
    """``{"distro", "version", "held", "active", "image"}``: the package's installed
    version and hold, the daemon's state, and whether ``image`` is present."""

    def command(self, package: str, image: str) -> str:
        q = shlex.quote
        return (
            '. /etc/os-release 2>/dev/null; echo "distro=$ID$(echo $VERSION_ID | tr -d .)"; '
            f"echo \"version=$(dpkg-query -W -f='${{Version}}' {q(package)} 2>/dev/null)\"; "
            f"apt-mark showhold 2>/dev/null | grep -qx {q(package)} && echo held=yes; "
            'echo "active=$(systemctl is-active docker 2>/dev/null)"; '
            f"docker image inspect --format present {q(image)} 2>/dev/null | sed 's/^/image=/'; "
            "true"
        )

    def process(self, output: list[str]) -> dict:
        kv = dict(line.split("=", 1) for line in output if "=" in line)
        return {
            "distro": kv.get("distro") or None,
            "version": kv.get("version") or None,
            "held": kv.get("held") == "yes",
            "active": kv.get("active") == "active",
            "image": kv.get("image") == "present",
        }

    def default(self) -> dict:
        return {"distro": None, "version": None, "held": False, "active": False, "image": False}


def _package_ops(plan: ContainerPlan, state: dict, ops: list[OperationMeta]) -> None:
    """Install at the pin (or the candidate where the distro has no pin), then hold."""
    install = state["version"] is None or bool(plan.version and state["version"] != plan.version)
    if install:
        spec = f"{plan.package}={plan.version}" if plan.version else plan.package
        ops.append(
            apt.packages(
                name=f"Container engine {spec}",
                packages=[spec],
                update=True,
                cache_time=3600,
                extra_install_args="--allow-change-held-packages --allow-downgrades",
            )
        )
    if install or not state["held"]:
        ops.append(
            server.shell(name=f"Hold {plan.package}", commands=[f"apt-mark hold {plan.package}"])
        )


@deploy("Container engine")
def container_engine(s: Settings, image: str, ops: list[OperationMeta]) -> ContainerPlan:
    """docker at its pin, held; daemon.json; running; ``image`` (name@sha256) pulled."""
    probe = container_plan(s, None)
    state = host.get_fact(ContainerState, package=probe.package, image=image)
    plan = container_plan(s, state["distro"])
    _package_ops(plan, state, ops)
    files.directory(name="Docker config directory", path="/etc/docker", mode="755")
    config = files.put(
        name=f"Docker daemon settings ({DAEMON_JSON})",
        src=StringIO(plan.daemon_json),
        dest=DAEMON_JSON,
        mode="644",
    )
    ops.append(config)
    # live-restore: a daemon restart for new settings does not stop a serving engine
    ops.append(
        systemd.service(name="Docker running", service=plan.service, running=True, enabled=True)
    )
    systemd.service(
        name="Docker picks up its settings",
        service=plan.service,
        restarted=True,
        _if=config.did_change,
    )
    if not state["image"]:
        ops.append(
            server.shell(
                name=f"Pull {image}",
                commands=[f"{plan.binary} pull {shlex.quote(image)}"],
            )
        )
    return plan
