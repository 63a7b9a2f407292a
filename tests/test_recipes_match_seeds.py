"""Every serving command in the vendor guides renders flag for flag from the catalog."""

from __future__ import annotations

import pytest
from seeds import SEEDS, commands, normalise, split_docker

from llmfleet.render import render
from llmfleet.settings import Settings, settings_from

ASCEND = [
    "ascend-a3-w4a8-in128k-out1k-20ms",
    "ascend-a3-w4a8-in128k-out1k-50ms",
    "ascend-a3-w4a8-in128k-out1k-prefix90-50ms",
    "ascend-a3-w4a8-in16k-out1k-20ms",
    "ascend-a3-w4a8-in16k-out1k-50ms",
    "ascend-a3-w4a8-in3k5-out1k5-20ms",
    "ascend-a3-w4a8-in3k5-out1k5-50ms",
    "ascend-a3-w4a8-in64k-out1k-20ms",
    "ascend-a3-w4a8-in64k-out1k-50ms",
    "ascend-a3-w4a8-in64k-out1k-prefix90-50ms",
]
# seed:line of the command -> (recipe, --set overrides, rank)
EXPECTED: dict[str, tuple[str, dict[str, str], int]] = {
    "000:48": ("lambda-b200-sglang", {}, 0),
    "000:66": ("lambda-b200-vllm", {}, 0),
    "001:19": ("vllm-h200-bf16-docker-latest", {}, 0),
    "001:29": ("vllm-mi300x-fp8-docker", {}, 0),
    "001:44": ("vllm-h200-fp8-text-dp-ep", {}, 0),
    "001:52": ("vllm-h200-fp8-multimodal-dp-ep", {}, 0),
    "001:63": ("vllm-h200-fp8-latency-mtp", {}, 0),
    "001:69": ("vllm-gb200-nvfp4", {}, 0),
    "001:76": ("vllm-mi355x-fp8", {}, 0),
    "002:26": ("sglang-h200-bf16-nextn", {}, 0),
    "002:46": ("sglang-h200-bf16-nextn", {}, 0),
    "002:482": ("sglang-h200-bf16-nextn", {"overlay.cuda-ipc": "true"}, 0),
    "003:20": ("vllm-h200-bf16-docker", {}, 0),
    "003:44": ("vllm-h200-bf16-text", {}, 0),
    "003:56": ("vllm-h200-bf16-multimodal", {}, 0),
    "003:72": ("vllm-h200-bf16-latency-mtp", {}, 0),
    "003:87": ("vllm-gb200-bf16-2node", {"master_addr": "10.0.0.1"}, 0),
    "003:99": ("vllm-gb200-bf16-2node", {"master_addr": "10.0.0.1"}, 1),
}
SEED_COMMANDS = commands()
ASCEND_COMMANDS = [c for c in SEED_COMMANDS if c.seed.startswith("004")]
for cmd, rid in zip(ASCEND_COMMANDS, ASCEND, strict=True):
    EXPECTED[cmd.key] = (rid, {"network_interface": "<network-interface>"}, 0)


def test_every_seed_command_has_a_recipe() -> None:
    found = {c.key for c in SEED_COMMANDS}
    assert len(SEED_COMMANDS) == 28, "a serving command was added to or lost from the guides"
    assert found == set(EXPECTED), f"unmapped: {sorted(found - set(EXPECTED))}"


@pytest.mark.parametrize("cmd", SEED_COMMANDS, ids=lambda c: c.key)
def test_recipe_renders_the_guide_command(catalog, cmd) -> None:
    rid, sets, rank = EXPECTED[cmd.key]
    recipe = catalog.recipe(rid)
    tokens = cmd.tokens
    dep = settings_from({"hf_home": "~/.cache/huggingface", **sets})
    if tokens[0] == "docker":
        opts, image, tokens = split_docker(tokens)
        dep = settings_from(
            {"hf_home": "~/.cache/huggingface", "runtime": "docker", "port": "8000", **sets}
        )
        r = render(catalog, recipe, dep, rank=rank)
        assert r.docker is not None
        assert r.docker["image"] == image
        assert r.docker["options"] == opts
        tokens = r.docker["entrypoint"] + tokens
    else:
        r = render(catalog, recipe, dep, rank=rank)
    n = len(recipe.launcher)
    seed_launcher, seed_flags = normalise(tokens, n)
    our_launcher, our_flags = normalise(r.argv, n)
    assert our_launcher == seed_launcher
    assert our_flags == seed_flags
    assert r.env == cmd.env
    assert r.sysctl == cmd.sysctl
    assert r.unset_env == cmd.unset
    assert r.env_scripts == cmd.sources
    assert r.cpu_governor == cmd.governor


def test_deployment_values_come_from_the_deployment(catalog) -> None:
    r = render(
        catalog,
        catalog.recipe("vllm-h200-bf16-text"),
        settings_from(
            {"model_path": "/models/q", "port": "9001", "served_name": "q", "bind": "10.1.1.1"}
        ),
    )
    assert r.argv[:9] == [
        "vllm",
        "serve",
        "/models/q",
        "--host",
        "10.1.1.1",
        "--port",
        "9001",
        "--served-model-name",
        "q",
    ]


def test_guide_defaults_for_host_and_port(catalog) -> None:
    r = render(
        catalog,
        catalog.recipe("ascend-a3-w4a8-in16k-out1k-20ms"),
        settings_from({"network_interface": "enp1s0"}),
    )
    assert (r.host, r.port) == ("127.0.0.1", 6688)
    assert r.env["HCCL_SOCKET_IFNAME"] == "enp1s0" == r.env["GLOO_SOCKET_IFNAME"]


@pytest.mark.parametrize(
    ("rid", "base", "hardware", "changed"),
    [
        ("sglang-b200-bf16-nextn", "sglang-h200-bf16-nextn", "b200", {}),
        (
            "sglang-h100-bf16-tp16-2node",
            "sglang-h200-bf16-nextn",
            "h100",
            {
                "--tp": ("16",),
                "--nnodes": ("2",),
                "--node-rank": ("0",),
                "--dist-init-addr": ("*",),
            },
        ),
        ("vllm-mi300x-fp8-text-dp-ep", "vllm-h200-fp8-text-dp-ep", "mi300x", {}),
        ("vllm-mi300x-fp8-multimodal-dp-ep", "vllm-h200-fp8-multimodal-dp-ep", "mi300x", {}),
    ],
)
def test_recipes_the_guides_describe_in_prose(catalog, rid, base, hardware, changed) -> None:
    """Configurations stated in tables/tips rather than as a command: same flags, per hardware."""
    ours = render(catalog, catalog.recipe(rid), Settings())
    theirs = render(catalog, catalog.recipe(base), Settings())
    expected = dict(normalise(theirs.argv, 3)[1]) | changed
    assert dict(normalise(ours.argv, 3)[1]) == expected
    assert ours.hardware == hardware


def test_every_recipe_is_covered(catalog) -> None:
    covered = {rid for rid, _, _ in EXPECTED.values()} | {
        "sglang-b200-bf16-nextn",
        "sglang-h100-bf16-tp16-2node",
        "vllm-mi300x-fp8-text-dp-ep",
        "vllm-mi300x-fp8-multimodal-dp-ep",
    }
    guide_recipes = {r.id for r in catalog.recipes.values() if r.source["seed"] != "lab"}
    assert guide_recipes <= covered
    for r in catalog.recipes.values():
        assert r.source["seed"] == "lab" or (SEEDS / r.source["seed"]).is_file(), r.id
