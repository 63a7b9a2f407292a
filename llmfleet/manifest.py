"""The release manifest: what one release on a host is, as one typed record.

The serve deploy writes it (``/var/lib/llmfleet/releases/<id>/manifest.json``);
``deploys/rollback.py``, ``llmfleet status`` and ``llmfleet releases`` read
it back through ``ReleaseManifest.from_json``.  The JSON shape is stable:
releases written by earlier versions still read.
"""

from __future__ import annotations

import hashlib
import json
import shlex
from dataclasses import dataclass, field
from typing import Any

from .hostpaths import RELEASES
from .multinode import HEAD, NodeRole

# Run on the host with its python3: every release's manifest, which is current and
# previous, and when each was made.  One round trip for rollback, status and releases.
LIST_PY = r"""
import json, os, sys
root = sys.argv[1]
out = {"current": None, "previous": None, "releases": {}, "created": {}}
for link in ("current", "previous"):
    p = os.path.join(root, link)
    out[link] = os.path.basename(os.readlink(p)) if os.path.islink(p) else None
if os.path.isdir(root):
    for name in sorted(os.listdir(root)):
        m = os.path.join(root, name, "manifest.json")
        if not os.path.islink(os.path.join(root, name)) and os.path.isfile(m):
            try:
                out["releases"][name] = json.load(open(m))
                out["created"][name] = os.path.getmtime(os.path.join(root, name))
            except ValueError:
                pass
print(json.dumps(out))
"""


def list_command(root: str = RELEASES) -> str:
    return f"python3 -c {shlex.quote(LIST_PY)} {shlex.quote(root)}"


def release_id(unit: str, env: str) -> str:
    """Content address of a release: the unit and env file pin everything that runs."""
    return hashlib.sha256(f"{unit}\0{env}".encode()).hexdigest()[:12]


@dataclass(frozen=True)
class ReleaseManifest:
    id: str
    recipe: str
    runtime: str
    venv: str | None
    packages: list[str]
    model_repo: str
    revision: str
    commit: str
    port: int
    served_name: str
    argv: list[str]
    overrides: dict[str, str] = field(default_factory=dict)
    # the env-file variable holding the endpoint key, for probes (None: no key)
    api_key_env: str | None = None
    # docker runtime: the image every host runs, pinned by digest (name@sha256:...)
    image: str | None = None
    # multi-node recipes: this host's group, rank, role and rendezvous ports, so a
    # rollback or status knows how to judge it (None: a one-node server)
    node: NodeRole | None = None

    @property
    def model(self) -> str:
        return f"{self.model_repo}@{self.commit[:12]}"

    @property
    def role(self) -> str:
        """``head`` is judged by HTTP and a completion, a ``worker`` by its process."""
        return self.node.role if self.node else HEAD

    def to_json(self) -> dict[str, Any]:
        # a one-node release keeps the shape releases had before multi-node groups
        node = {"node": self.node.to_json()} if self.node else {}
        return {
            "id": self.id,
            "recipe": self.recipe,
            "overrides": dict(self.overrides),
            "engine": {
                "runtime": self.runtime,
                "venv": self.venv,
                "packages": self.packages,
                "image": self.image,
            },
            "model": {"repo": self.model_repo, "revision": self.revision, "commit": self.commit},
            "port": self.port,
            "served_name": self.served_name,
            "argv": self.argv,
            "api_key_env": self.api_key_env,
            **node,
        }

    def text(self) -> str:
        return json.dumps(self.to_json(), indent=2) + "\n"

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ReleaseManifest:
        engine, model = data.get("engine") or {}, data.get("model") or {}
        return cls(
            id=str(data.get("id", "")),
            recipe=str(data.get("recipe", "-")),
            runtime=str(engine.get("runtime", "venv")),
            venv=engine.get("venv"),
            packages=list(engine.get("packages", [])),
            model_repo=str(model.get("repo", "-")),
            revision=str(model.get("revision", "-")),
            commit=str(model.get("commit", "-")),
            port=int(data.get("port", 8000)),
            served_name=str(data.get("served_name", "")),
            argv=list(data.get("argv", [])),
            overrides=dict(data.get("overrides", {})),
            api_key_env=data.get("api_key_env"),
            image=engine.get("image"),
            node=NodeRole.from_json(data["node"]) if data.get("node") else None,
        )


@dataclass(frozen=True)
class ReleaseState:
    """The releases kept on one host: which is current, which previous."""

    current: str | None = None
    previous: str | None = None
    releases: dict[str, ReleaseManifest] = field(default_factory=dict)
    created: dict[str, float] = field(default_factory=dict)  # id -> mtime (epoch s)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ReleaseState:
        return cls(
            current=data.get("current"),
            previous=data.get("previous"),
            releases={
                rid: ReleaseManifest.from_json({"id": rid, **m})
                for rid, m in (data.get("releases") or {}).items()
                if isinstance(m, dict)
            },
            created={k: float(v) for k, v in (data.get("created") or {}).items()},
        )

    def newest_first(self) -> list[ReleaseManifest]:
        return sorted(self.releases.values(), key=lambda m: -self.created.get(m.id, 0.0))

    def mark(self, rid: str) -> str:
        return "current" if rid == self.current else "previous" if rid == self.previous else ""

    def find(self, wanted: str | None) -> tuple[str | None, str]:
        """(release id, "") for ``wanted`` (an id, its prefix, or None for previous), or
        (None, why) with the choices named."""
        if not wanted:
            if self.previous and self.previous in self.releases:
                return self.previous, ""
            return None, "no previous release on this host to roll back to"
        hits = [r for r in self.releases if r.startswith(wanted)]
        if len(hits) == 1:
            return hits[0], ""
        known = ", ".join(sorted(self.releases)) or "none"
        what = "is ambiguous" if hits else "not found"
        return None, f"release {wanted!r} {what} (releases: {known})"
