"""Hosts for ``inventories/lambda.py``: the Lambda Cloud instance list or a plain list.

Kept apart from the inventory file so the API handling is tested against
responses in the documented format without pyinfra or the network.
"""

from __future__ import annotations

import os
import re
from collections import defaultdict
from typing import Any

import requests

from .errors import LlmfleetError

API_URL = "https://cloud.lambda.ai/api/v1/instances"
# Instance types are named like gpu_8x_b200_sxm6 / gpu_8x_h100_sxm5; the
# description ("8x B200 (180 GB SXM6)") is the fallback.
TYPE_PATTERN = re.compile(r"(\d+)x[_ ]?(b200|h200|h100|gb200)", re.IGNORECASE)
HOST_PROFILE_GPUS = {"b200": 8, "h200": 8, "h100": 8, "gb200": 4}


class InventoryError(LlmfleetError):
    pass


def hardware_for(instance_type: dict[str, Any]) -> str | None:
    """Map an instance type to a hardware profile, or None when no profile fits."""
    text = f"{instance_type.get('name', '')} {instance_type.get('description', '')}"
    m = TYPE_PATTERN.search(text)
    if not m:
        return None
    count, gpu = int(m.group(1)), m.group(2).lower()
    return gpu if HOST_PROFILE_GPUS.get(gpu) == count else None


def hosts_from_instances(payload: dict[str, Any]) -> tuple[dict[str, list], list[str]]:
    """Group active instances by hardware; return (groups, skipped-with-reason)."""
    groups: dict[str, list] = defaultdict(list)
    skipped: list[str] = []
    for inst in payload.get("data", []):
        name = inst.get("name") or inst.get("id")
        itype = inst.get("instance_type", {})
        if inst.get("status") != "active" or not inst.get("ip"):
            skipped.append(f"{name}: status {inst.get('status')}, not active")
            continue
        hw = hardware_for(itype)
        if hw is None:
            skipped.append(f"{name}: instance type {itype.get('name')} has no hardware profile")
            continue
        groups[hw].append(
            (
                name,
                {
                    "ssh_hostname": inst["ip"],
                    "ssh_user": "ubuntu",
                    "private_ip": inst.get("private_ip"),
                    "lambda_instance_id": inst.get("id"),
                    "region": (inst.get("region") or {}).get("name"),
                },
            )
        )
    return dict(groups), skipped


def fetch_instances(api_key: str, url: str = API_URL, timeout: float = 20) -> dict[str, Any]:
    try:
        resp = requests.get(url, headers={"Authorization": f"Bearer {api_key}"}, timeout=timeout)
    except requests.RequestException as exc:
        raise InventoryError(f"Lambda Cloud API at {url}: {exc}") from exc
    if resp.status_code in (401, 403):
        raise InventoryError(
            f"Lambda Cloud API refused the key (HTTP {resp.status_code}): check LAMBDA_API_KEY"
        )
    if resp.status_code != 200:
        raise InventoryError(
            f"Lambda Cloud API answered HTTP {resp.status_code}: {resp.text[:200]}"
        )
    return resp.json()


def hosts_from_list(text: str, default_hardware: str | None) -> dict[str, list]:
    """``10.0.0.1:b200 gpu2.example:h200 10.0.0.3`` (hardware after the colon)."""
    groups: dict[str, list] = defaultdict(list)
    for entry in re.split(r"[\s,]+", text.strip()):
        if not entry:
            continue
        host, _, hw = entry.partition(":")
        hw = hw or default_hardware
        if not hw:
            raise InventoryError(
                f"host {host}: no hardware given; write {host}:b200 or set LLMFLEET_HARDWARE"
            )
        groups[hw].append((host, {"ssh_hostname": host}))
    return dict(groups)


def load(environ: dict[str, str] | None = None) -> tuple[dict[str, list], list[str]]:
    env = os.environ if environ is None else environ
    key = env.get("LAMBDA_API_KEY")
    if key:
        groups, skipped = hosts_from_instances(
            fetch_instances(key, env.get("LAMBDA_API_URL", API_URL))
        )
        if not groups:
            raise InventoryError(
                "Lambda Cloud has no active instance with a known hardware "
                "profile" + (": " + "; ".join(skipped) if skipped else "")
            )
        return groups, skipped
    hosts = env.get("LLMFLEET_HOSTS", "")
    if env.get("LLMFLEET_HOSTS_FILE"):
        with open(env["LLMFLEET_HOSTS_FILE"]) as fh:
            hosts += "\n" + fh.read()
    if not hosts.strip():
        raise InventoryError(
            "no hosts: set LAMBDA_API_KEY to list your Lambda Cloud "
            "instances, or LLMFLEET_HOSTS='10.0.0.1:b200 10.0.0.2:b200' "
            "(or LLMFLEET_HOSTS_FILE) for a plain host list"
        )
    return hosts_from_list(hosts, env.get("LLMFLEET_HARDWARE")), []
