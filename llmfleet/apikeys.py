"""Endpoint API keys: generated once per host on the control node, kept 0600.

The key reaches the host only inside the 0600 environment file, in the
variable the engine record names (``api_key_env`` in ``files/engines/``:
``VLLM_API_KEY`` for vLLM, which reads it from the environment, so it is never
in argv or ``ps``).  An engine that takes its key only on the command line
(SGLang's ``--api-key``), where every local user could read it, has no
``api_key_env``: we refuse that rather than leak it.
"""

from __future__ import annotations

import os
import re
import secrets
from pathlib import Path
from typing import Any

from .errors import LlmfleetError
from .settings import Settings


def secrets_dir() -> Path:
    return Path(os.environ.get("LLMFLEET_SECRETS_DIR", Path.home() / ".config/llmfleet/secrets"))


def api_key_for(host_name: str, s: Settings, engine: dict[str, Any]) -> str | None:
    """The host's endpoint key, or None when the inventory asks for none.

    ``api_key_file: PATH`` uses a key the site manages; ``api_key: true``
    generates one the first time and reuses it on every later run.
    """
    path = s.api_key_file
    if not s.api_key and not path:
        return None
    if not engine.get("api_key_env"):
        raise LlmfleetError(
            f"{host_name}: api_key: {engine['id']} takes its key only in argv, "
            "where any local user can read it (fix: put the endpoint behind a "
            "gateway that checks keys, or use a vLLM recipe)"
        )
    if path:
        try:
            key = Path(path).read_text().strip()
        except OSError as exc:
            raise LlmfleetError(f"{host_name}: api_key_file: cannot read {path}: {exc}") from exc
        if not key:
            raise LlmfleetError(f"{host_name}: api_key_file: {path} is empty")
        return key
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", host_name)
    keyfile = secrets_dir() / f"{safe}.api-key"
    if keyfile.exists():
        return keyfile.read_text().strip()
    keyfile.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    key = f"llmf-{secrets.token_urlsafe(32)}"
    fd = os.open(keyfile, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(key + "\n")
    return key
