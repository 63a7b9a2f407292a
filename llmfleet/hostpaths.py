"""Every path and unit name llmfleet owns on a host, in one place.

Roles, facts, the on-call commands and the previews all build their paths
from here, so what ``llmfleet plan --unit`` prints, what the deploy writes
and what ``llmfleet status`` reads can never disagree about where things are.
"""

from __future__ import annotations

import re

# the server
UNIT_NAME = "llmfleet-serve"
UNIT_FILE = f"/etc/systemd/system/{UNIT_NAME}.service"
CONFIG_DIR = "/etc/llmfleet"
ENV_FILE = f"{CONFIG_DIR}/serve.env"
HOME = "/var/lib/llmfleet"
RELEASES = f"{HOME}/releases"
CURRENT_RELEASE = f"{RELEASES}/current"
DEFAULT_HF_HOME = f"{HOME}/hf"

# software
OPT = "/opt/llmfleet"
BIN_DIR = f"{OPT}/bin"
ENGINES_DIR = f"{OPT}/engines"
TOOLS_DIR = f"{OPT}/tools"
UV = f"{TOOLS_DIR}/bin/uv"
HUB_VENV = f"{TOOLS_DIR}/hub"
FETCH_SCRIPT = f"{BIN_DIR}/llmfleet-fetch.py"
# beside the fetch script: the swarm imports its manifest, marker and body-copy code
SWARM_SCRIPT = f"{BIN_DIR}/llmfleet-swarm.py"
HEALTH_SCRIPT = f"{BIN_DIR}/llmfleet-health.py"
# beside the health script: it reads connections with the health script's code
GROUP_WATCH_SCRIPT = f"{BIN_DIR}/llmfleet-group-watch.py"
GROUP_WATCH_UNIT = "llmfleet-group-watch.service"
ENV_MARKER = ".llmfleet-env"

# secrets that visit a host only while they are needed
HF_TOKEN = f"{CONFIG_DIR}/hf-token"

# the site Hub mirror
MIRROR_UNIT = "llmfleet-mirror.service"
MIRROR_HOME = "/var/lib/llmfleet-mirror"
MIRROR_CONFIG = f"{CONFIG_DIR}/olah.toml"
MIRROR_USER = "llmfleet-mirror"

# the fleet's router (deploys/router.py)
ROUTER_UNIT = "llmfleet-router.service"
ROUTER_USER = "llmfleet-router"
ROUTER_HOME = "/var/lib/llmfleet-router"
ROUTER_ENV = f"{CONFIG_DIR}/router.env"
ROUTER_RELEASES = f"{ROUTER_HOME}/releases"
ROUTER_LAUNCHER = f"{BIN_DIR}/llmfleet-router.py"

# host tuning
TUNING_UNIT = "llmfleet-tuning.service"
SYSCTL_CONF = "/etc/sysctl.d/90-llmfleet.conf"


def systemd_unit_file(unit: str) -> str:
    return f"/etc/systemd/system/{unit}"


def release_dir(rid: str) -> str:
    return f"{RELEASES}/{rid}"


def snapshot_dir(hf_home: str, repo: str, commit: str) -> str:
    """huggingface_hub's own cache layout, so HF_HUB_OFFLINE engines find it."""
    return f"{hf_home}/hub/models--{repo.replace('/', '--')}/snapshots/{commit}"


def weights_marker(hf_home: str, repo: str, commit: str) -> str:
    """The completion marker of a verified snapshot (it holds the Hub's manifest)."""
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", repo)
    return f"{hf_home}/llmfleet/{safe}@{commit}.complete"


def weights_run_dir(hf_home: str) -> str:
    return f"{hf_home}/llmfleet/run"
