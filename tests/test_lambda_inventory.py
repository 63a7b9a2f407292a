"""inventories/lambda.py: the Lambda Cloud API in its documented format, or a plain list."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import cli

from llmfleet import lambda_cloud

REPO = Path(__file__).resolve().parent.parent

PAYLOAD = {
    "data": [
        {
            "id": "0920582c7ff041399e34823a0be62549",
            "name": "b200-a",
            "ip": "192.0.2.10",
            "private_ip": "10.19.60.24",
            "status": "active",
            "hostname": "10-19-60-24.cloud.lambda.ai",
            "ssh_key_names": ["ops"],
            "region": {"name": "us-east-3", "description": "Washington DC"},
            "instance_type": {
                "name": "gpu_8x_b200_sxm6",
                "description": "8x B200 (180 GB SXM6)",
                "price_cents_per_hour": 4792,
                "specs": {"vcpus": 208, "memory_gib": 2900, "storage_gib": 22000, "gpus": 8},
            },
        },
        {
            "id": "b",
            "name": "h100-a",
            "ip": "192.0.2.11",
            "status": "active",
            "region": {"name": "us-west-1"},
            "instance_type": {"name": "gpu_8x_h100_sxm5", "description": "8x H100 (80 GB SXM5)"},
        },
        {
            "id": "c",
            "name": "booting-one",
            "ip": None,
            "status": "booting",
            "instance_type": {"name": "gpu_8x_b200_sxm6"},
        },
        {
            "id": "d",
            "name": "small",
            "ip": "192.0.2.12",
            "status": "active",
            "instance_type": {"name": "gpu_1x_a10", "description": "1x A10 (24 GB PCIe)"},
        },
    ]
}


class FakeResponse:
    def __init__(self, status: int, body: dict):
        self.status_code, self._body, self.text = status, body, json.dumps(body)

    def json(self) -> dict:
        return self._body


def test_instances_are_grouped_by_hardware(monkeypatch) -> None:
    seen = {}

    def fake_get(url, headers, timeout):
        seen.update(url=url, headers=headers)
        return FakeResponse(200, PAYLOAD)

    monkeypatch.setattr(lambda_cloud.requests, "get", fake_get)
    groups, skipped = lambda_cloud.load({"LAMBDA_API_KEY": "secret_abc"})
    assert seen["headers"] == {"Authorization": "Bearer secret_abc"}
    assert [h for h, _ in groups["b200"]] == ["b200-a"]
    assert groups["b200"][0][1]["ssh_hostname"] == "192.0.2.10"
    assert groups["b200"][0][1]["private_ip"] == "10.19.60.24"
    assert [h for h, _ in groups["h100"]] == ["h100-a"]
    assert any("booting-one" in s and "not active" in s for s in skipped)
    assert any("small" in s and "gpu_1x_a10" in s for s in skipped)


def test_bad_key_is_reported_clearly(monkeypatch) -> None:
    monkeypatch.setattr(
        lambda_cloud.requests,
        "get",
        lambda *a, **k: FakeResponse(401, {"error": {"code": "unauthorized"}}),
    )
    with pytest.raises(lambda_cloud.InventoryError, match="refused the key.*LAMBDA_API_KEY"):
        lambda_cloud.load({"LAMBDA_API_KEY": "wrong"})


def test_no_key_and_no_hosts_says_what_to_set() -> None:
    with pytest.raises(lambda_cloud.InventoryError, match="LAMBDA_API_KEY.*LLMFLEET_HOSTS"):
        lambda_cloud.load({})


def test_plain_host_list() -> None:
    groups, _ = lambda_cloud.load(
        {"LLMFLEET_HOSTS": "10.0.0.1:b200, 10.0.0.2", "LLMFLEET_HARDWARE": "h200"}
    )
    assert groups == {
        "b200": [("10.0.0.1", {"ssh_hostname": "10.0.0.1"})],
        "h200": [("10.0.0.2", {"ssh_hostname": "10.0.0.2"})],
    }
    with pytest.raises(lambda_cloud.InventoryError, match="10.0.0.9: no hardware"):
        lambda_cloud.load({"LLMFLEET_HOSTS": "10.0.0.9"})


def test_plan_over_the_lambda_inventory_uses_group_defaults(monkeypatch, capsys) -> None:
    monkeypatch.delenv("LAMBDA_API_KEY", raising=False)
    rc, out, err = cli(
        "plan",
        "inventories/lambda.py",
        "--json",
        cwd=REPO,
        env={"LLMFLEET_HOSTS": "10.0.0.1:b200 10.0.0.2:h100"},
    )
    assert rc == 0, err
    rows = {r["host"]: r for r in json.loads(out)}
    assert rows["10.0.0.1"]["recipe"] == "lambda-b200-vllm"
    assert rows["10.0.0.2"]["recipe"] == "vllm-h200-fp8-text-dp-ep"
    assert rows["10.0.0.2"]["memory"]["fits"]
