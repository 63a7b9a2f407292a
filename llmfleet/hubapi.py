"""Resolve a model repo + revision to a commit on the control node, with plain requests.

Why not huggingface_hub here: pyinfra's CLI runs under gevent, whose
monkey-patching removes ``select.epoll``, and huggingface_hub's HTTP stack
fails to import after that.  The Hub's JSON API for this one call is small
and stable (``GET /api/models/{repo}/revision/{revision}``), and every error
it can give is one an operator must act on, so each gets its own message.
"""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import quote

import requests

from .errors import LlmfleetError

HUB = "https://huggingface.co"
_RESOLVED: dict[tuple[str, str, str], str] = {}


def control_token() -> str | None:
    """The Hub token from the control node's environment (HF_TOKEN or HF_TOKEN_FILE)."""
    if os.environ.get("HF_TOKEN"):
        return os.environ["HF_TOKEN"].strip()
    path = os.environ.get("HF_TOKEN_FILE")
    return Path(path).read_text().strip() if path else None


def _get(
    endpoint: str, repo: str, revision: str, token: str | None, timeout: float
) -> requests.Response:
    url = f"{endpoint.rstrip('/')}/api/models/{repo}/revision/{quote(revision, safe='')}"
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return requests.get(url, headers=headers, timeout=timeout)


def resolve_commit(
    repo: str, revision: str, endpoint: str | None = None, timeout: float = 20
) -> str:
    """Repo + branch/tag/commit -> commit hash, once per run per endpoint."""
    base = endpoint or os.environ.get("HF_ENDPOINT") or HUB
    key = (base, repo, revision)
    if key in _RESOLVED:
        return _RESOLVED[key]
    where = base if base != HUB else "the Hugging Face Hub"
    token = control_token()
    try:
        resp = _get(base, repo, revision, token, timeout)
        code = resp.headers.get("X-Error-Code", "")
        # Some endpoints (olah mirrors) answer a missing revision as a missing
        # repo: ask once more for the default branch to tell which it is.
        if (
            resp.status_code in (401, 403, 404)
            and code not in ("GatedRepo", "RevisionNotFound")
            and revision != "main"
            and _get(base, repo, "main", token, timeout).ok
        ):
            code = "RevisionNotFound"
    except requests.RequestException as exc:
        raise LlmfleetError(f"cannot reach {where} to resolve {repo}@{revision}: {exc}") from exc
    if code == "GatedRepo":
        raise LlmfleetError(
            f"{repo} on {where} is gated: accept its licence on the Hub and "
            "export HF_TOKEN (or HF_TOKEN_FILE) on the control node"
        )
    if code == "RevisionNotFound":
        raise LlmfleetError(
            f"revision {revision!r} of {repo} does not exist on {where}: "
            "set revision to a branch, tag or commit of that repo"
        )
    if resp.status_code in (401, 403, 404):
        hint = "" if token else " (or it is private: export HF_TOKEN on the control node)"
        raise LlmfleetError(f"model repo {repo} not found on {where}{hint}")
    if not resp.ok:
        raise LlmfleetError(
            f"{where} answered {resp.status_code} for {repo}@{revision}: {resp.text[:200]}"
        )
    sha = (resp.json() or {}).get("sha")
    if not sha:
        raise LlmfleetError(f"{where} gave no commit for {repo}@{revision}")
    _RESOLVED[key] = sha
    return sha
