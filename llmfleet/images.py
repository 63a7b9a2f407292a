"""Container images pinned by digest, resolved once on the control node.

A recipe names an image by tag (the guides' ``vllm/vllm-openai:latest``), and
a tag moves: two hosts deployed a day apart would run different engines, and
a rollback could not return to the same bytes.  So the plan resolves the tag
to its manifest digest once, from the control node, with the registry's own
HTTP API (the Docker Registry v2 / OCI distribution protocol, token auth
included), as the weights resolve ``main`` to a commit.  Every host then runs
``repo@sha256:...`` and the release manifest records it: a moved tag is a new
release, and a rollback runs the old digest again.

With a site registry (``image_registry``, a pull-through cache such as
Debian's ``docker-registry`` in proxy mode), hosts pull the same digest from
it; digests are content addresses, so the bytes are the same wherever they
come from.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

import requests

from .errors import LlmfleetError

DOCKER_HUB = "registry-1.docker.io"
MANIFEST_TYPES = ", ".join(
    [
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.docker.distribution.manifest.v2+json",
    ]
)
DIGEST = re.compile(r"sha256:[0-9a-f]{64}")


class ImageError(LlmfleetError):
    pass


@dataclass(frozen=True)
class ImageRef:
    """``[registry/]repository[:tag][@digest]``, as docker reads it."""

    registry: str
    repository: str
    tag: str | None = None
    digest: str | None = None
    # how the reference was written: Docker Hub images keep their short name
    explicit_registry: bool = False

    @classmethod
    def parse(cls, text: str) -> ImageRef:
        rest, _, digest = text.partition("@")
        if digest and not DIGEST.fullmatch(digest):
            raise ImageError(f"image {text!r}: {digest!r} is not a sha256 digest")
        first, slash, remainder = rest.partition("/")
        explicit = bool(slash) and ("." in first or ":" in first or first == "localhost")
        registry, path = (first, remainder) if explicit else (DOCKER_HUB, rest)
        name, colon, tag = path.rpartition(":")
        if not colon:
            name, tag = path, ""
        if not name or not re.fullmatch(r"[a-z0-9]+(?:[._/-][a-z0-9]+)*", name):
            raise ImageError(f"image {text!r}: {name!r} is not a repository name")
        if registry == DOCKER_HUB and "/" not in name:
            name = f"library/{name}"
        return cls(registry, name, tag or (None if digest else "latest"), digest or None, explicit)

    @property
    def name(self) -> str:
        """The repository as docker prints it (Docker Hub's short form kept)."""
        if self.explicit_registry:
            return f"{self.registry}/{self.repository}"
        return self.repository.removeprefix("library/")

    def pinned(self, digest: str) -> str:
        """``name@digest``: what every host runs."""
        return f"{self.name}@{digest}"

    def via(self, registry: str | None) -> ImageRef:
        """The same repository through a site registry (a pull-through cache)."""
        if not registry:
            return self
        return replace(self, registry=registry, explicit_registry=True)

    def __str__(self) -> str:
        text = self.name + (f":{self.tag}" if self.tag else "")
        return text + (f"@{self.digest}" if self.digest else "")


def _token(challenge: str, timeout: float) -> str | None:
    """Bearer token for an anonymous pull, from a ``WWW-Authenticate`` challenge."""
    if not challenge.lower().startswith("bearer "):
        return None
    params = dict(re.findall(r'(\w+)="([^"]*)"', challenge))
    realm = params.pop("realm", None)
    if not realm:
        return None
    resp = requests.get(realm, params=params, timeout=timeout)
    resp.raise_for_status()
    body = resp.json()
    return body.get("token") or body.get("access_token")


def registry_url(ref: ImageRef, insecure: frozenset[str] = frozenset()) -> str:
    scheme = "http" if ref.registry in insecure else "https"
    return f"{scheme}://{ref.registry}/v2/{ref.repository}"


def resolve_digest(
    ref: ImageRef, insecure: frozenset[str] = frozenset(), timeout: float = 20
) -> str:
    """The manifest digest ``ref``'s tag points at now (a digest ref is its own answer)."""
    if ref.digest:
        return ref.digest
    url = f"{registry_url(ref, insecure)}/manifests/{ref.tag}"
    headers = {"Accept": MANIFEST_TYPES}
    where = f"{ref.name}:{ref.tag} at {ref.registry}"
    try:
        resp = requests.head(url, headers=headers, timeout=timeout)
        if resp.status_code == 401:
            token = _token(resp.headers.get("WWW-Authenticate", ""), timeout)
            if token:
                headers["Authorization"] = f"Bearer {token}"
                resp = requests.head(url, headers=headers, timeout=timeout)
    except requests.RequestException as exc:
        raise ImageError(
            f"cannot reach {ref.registry} to resolve {where}: {exc} (fix: check the "
            "control node's network, or pin image to a digest: image=NAME@sha256:...)"
        ) from exc
    if resp.status_code == 404:
        raise ImageError(f"image {where} not found (fix: check the tag)")
    if resp.status_code in (401, 403):
        raise ImageError(f"image {where}: the registry refused an anonymous pull")
    if not resp.ok:
        raise ImageError(f"image {where}: registry answered HTTP {resp.status_code}")
    digest = resp.headers.get("Docker-Content-Digest", "")
    if not DIGEST.fullmatch(digest):
        raise ImageError(f"image {where}: the registry sent no manifest digest")
    return digest
