"""The docker runtime, control side: image refs, digest resolution, unit, daemon settings."""

from __future__ import annotations

import json
import shlex
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from llmfleet.catalog import Catalog
from llmfleet.containers import container_plan
from llmfleet.images import DOCKER_HUB, ImageError, ImageRef, resolve_digest
from llmfleet.serveplan import build_serve_plan, weights_plan
from llmfleet.settings import settings_from

DIGEST = "sha256:" + "d" * 64
COMMIT = "c" * 40


@pytest.mark.parametrize(
    ("text", "registry", "repository", "tag", "name"),
    [
        ("vllm/vllm-openai:latest", DOCKER_HUB, "vllm/vllm-openai", "latest", "vllm/vllm-openai"),
        ("ubuntu", DOCKER_HUB, "library/ubuntu", "latest", "ubuntu"),
        ("10.0.0.1:5000/lab/x:v1", "10.0.0.1:5000", "lab/x", "v1", "10.0.0.1:5000/lab/x"),
        ("lmsysorg/sglang:nightly-dev-1", DOCKER_HUB, "lmsysorg/sglang", "nightly-dev-1", None),
    ],
)
def test_refs_parse_as_docker_reads_them(text, registry, repository, tag, name) -> None:
    ref = ImageRef.parse(text)
    assert (ref.registry, ref.repository, ref.tag) == (registry, repository, tag)
    assert ref.pinned(DIGEST) == f"{name or ref.repository}@{DIGEST}"
    assert ref.via("cache:5000").pinned(DIGEST) == f"cache:5000/{repository}@{DIGEST}"


def test_bad_refs_are_named() -> None:
    with pytest.raises(ImageError, match="not a sha256 digest"):
        ImageRef.parse("x/y@sha256:short")
    with pytest.raises(ImageError, match="not a repository name"):
        ImageRef.parse("Bad/Name:1")


class Registry(BaseHTTPRequestHandler):
    """A registry that wants a bearer token (as Docker Hub does) and knows one tag."""

    asked: list[str] = []

    def do_HEAD(self) -> None:  # noqa: N802
        Registry.asked.append(self.path)
        if self.path.startswith("/token"):
            return self._json({"token": "t0k"})
        if self.headers.get("Authorization") != "Bearer t0k":
            self.send_response(401)
            realm = f"http://127.0.0.1:{self.server.server_port}/token"
            self.send_header("WWW-Authenticate", f'Bearer realm="{realm}",service="r",scope="s"')
            return self.end_headers()
        if self.path == "/v2/lab/x/manifests/v1":
            self.send_response(200)
            self.send_header("Docker-Content-Digest", DIGEST)
            return self.end_headers()
        self.send_response(404)
        self.end_headers()

    def do_GET(self) -> None:  # noqa: N802
        Registry.asked.append(self.path)
        self._json({"token": "t0k"})

    def _json(self, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def registry() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Registry)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    Registry.asked.clear()
    yield f"127.0.0.1:{server.server_port}"
    server.shutdown()


def test_a_tag_resolves_to_its_digest_through_token_auth(registry: str) -> None:
    ref = ImageRef.parse(f"{registry}/lab/x:v1")
    assert resolve_digest(ref, frozenset({registry})) == DIGEST
    assert Registry.asked[0] == "/v2/lab/x/manifests/v1" and "/token" in Registry.asked[1]
    with pytest.raises(ImageError, match="not found"):
        resolve_digest(ImageRef.parse(f"{registry}/lab/x:v2"), frozenset({registry}))
    # a digest is its own answer: no request
    before = len(Registry.asked)
    assert resolve_digest(ImageRef.parse(f"{registry}/lab/x@{DIGEST}")) == DIGEST
    assert len(Registry.asked) == before


def test_an_unreachable_registry_says_what_to_do() -> None:
    with pytest.raises(ImageError, match="cannot reach 127.0.0.1:9.*pin image to a digest"):
        resolve_digest(ImageRef.parse("127.0.0.1:9/lab/x:v1"), frozenset({"127.0.0.1:9"}))


def _docker_plan(catalog: Catalog, **data):
    s = settings_from({"api_key": True, **data})
    recipe = catalog.recipe("lab-cpu-vllm-tiny-docker")
    image = f"cache:5000/llmfleet-lab/vllm-cpu@{DIGEST}"
    weights = weights_plan(s, "llmfleet-lab/tiny-qwen2", COMMIT, None, False)
    return build_serve_plan(catalog, "lab1", s, recipe, weights, api_key="sekrit", image=image)


def test_the_unit_runs_the_pinned_image_and_reads_the_env_inside(catalog: Catalog) -> None:
    plan = _docker_plan(catalog)
    exec_start = next(x for x in plan.unit.splitlines() if x.startswith("ExecStart="))
    argv = shlex.split(exec_start.removeprefix("ExecStart=").replace("$$", "$"))
    assert argv[:6] == ["/usr/bin/docker", "run", "--rm", "--name", "llmfleet-serve", "--pull"]
    assert f"cache:5000/llmfleet-lab/vllm-cpu@{DIGEST}" in argv
    assert "/var/lib/llmfleet/hf:/root/.cache/huggingface:ro" in argv
    assert "/etc/llmfleet/serve.env:/run/llmfleet/serve.env:ro" in argv
    # the engine loads the snapshot where the container sees the cache
    model = argv[argv.index("--model") + 1]
    assert (
        model == f"/root/.cache/huggingface/hub/models--llmfleet-lab--tiny-qwen2/snapshots/{COMMIT}"
    )
    assert "sekrit" not in plan.unit and "-e" not in argv  # values only in the 0600 file
    assert "VLLM_API_KEY=sekrit" in plan.env and "HF_HOME=/root/.cache/huggingface" in plan.env
    assert "ExecStop=/usr/bin/docker stop -t 120 llmfleet-serve" in plan.unit
    assert "TimeoutStopSec=150" in plan.unit and "Restart=always" in plan.unit
    assert plan.manifest.image == f"cache:5000/llmfleet-lab/vllm-cpu@{DIGEST}"
    assert plan.manifest.to_json()["engine"]["image"] == plan.manifest.image


def test_a_new_digest_is_a_new_release(catalog: Catalog) -> None:
    a = _docker_plan(catalog)
    s = settings_from({})
    recipe = catalog.recipe("lab-cpu-vllm-tiny-docker")
    weights = weights_plan(s, "llmfleet-lab/tiny-qwen2", COMMIT, None, False)
    b = build_serve_plan(
        catalog,
        "lab1",
        s,
        recipe,
        weights,
        image="cache:5000/llmfleet-lab/vllm-cpu@sha256:" + "e" * 64,
    )
    assert a.release != b.release


def test_a_docker_recipe_must_mount_the_cache(catalog: Catalog) -> None:
    import dataclasses

    from llmfleet.errors import ValidationError

    # the guide's recipe mounts {hf_home}: a site's own cache path follows it
    s = settings_from({"hf_home": "/srv/hf"})
    recipe = catalog.recipe("lambda-b200-vllm")
    weights = weights_plan(s, recipe.model["repo"], COMMIT, None, False)
    plan = build_serve_plan(catalog, "b1", s, recipe, weights, image=f"vllm/vllm-openai@{DIGEST}")
    assert "/srv/hf:/root/.cache/huggingface:ro" in plan.unit
    assert plan.env.count("HF_HUB_OFFLINE=1") == 1
    bare = dataclasses.replace(recipe, container={**recipe.container, "options": ["--gpus", "all"]})
    with pytest.raises(ValidationError, match="runs in docker but mounts no /srv/hf"):
        build_serve_plan(catalog, "b1", s, bare, weights, image=f"vllm/vllm-openai@{DIGEST}")


def test_daemon_settings_and_the_pin(catalog: Catalog) -> None:
    s = settings_from(
        {
            "docker_data_root": "/nvme/docker",
            "insecure_registries": ["cache:5000"],
            "docker_log_max_size": "50m",
        }
    )
    plan = container_plan(s, "debian12")
    daemon = json.loads(plan.daemon_json)
    assert daemon == {
        "data-root": "/nvme/docker",
        "insecure-registries": ["cache:5000"],
        "live-restore": True,
        "log-driver": "json-file",
        "log-opts": {"max-file": "5", "max-size": "50m"},
    }
    assert plan.package == "docker.io" and plan.version == "20.10.24+dfsg1-1+deb12u1+b6"
    assert container_plan(s, "ubuntu2404").version is None  # candidate, then held
    assert container_plan(settings_from({"docker_version": "1.2"}), "debian12").version == "1.2"
