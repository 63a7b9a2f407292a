"""The read-only "what does the endpoint serve?" probe, shared by the serve deploy's
no-change check and ``llmfleet status``.

It runs with the host's python3 (standard library only) and reads the
endpoint key from the server's 0600 env file, never from argv, so a server
with an API key answers the probe instead of looking down (which would make
every re-run go through the full health gate).
"""

from __future__ import annotations

import shlex

from .hostpaths import ENV_FILE

# defines models(port, key_env) -> list of ids, or raises
MODELS_PY = r"""
import json, urllib.request
def models(port, key_env, env_file=ENV_FILE):
    headers = {}
    if key_env:
        try:
            for line in open(env_file).read().splitlines():
                if line.startswith(key_env + "="):
                    headers["Authorization"] = "Bearer " + line.split("=", 1)[1].strip("'\"")
        except OSError:
            pass
    req = urllib.request.Request("http://127.0.0.1:%s/v1/models" % port, headers=headers)
    with urllib.request.urlopen(req, timeout=5) as r:
        return [m["id"] for m in json.load(r).get("data", [])]
""".replace("ENV_FILE", repr(ENV_FILE))


def models_code(port: int, key_env: str | None) -> str:
    """The probe as a Python program: prints the served model ids as JSON, or ``null``."""
    return (
        MODELS_PY
        + "import sys\ntry:\n"
        + f"    print(json.dumps(models({int(port)}, {key_env!r})))\n"
        + "except Exception:\n    print('null')\n"
    )


def models_command(port: int, key_env: str | None) -> str:
    """Prints the served model ids as JSON, or ``null`` when nothing answers."""
    return f"python3 -c {shlex.quote(models_code(port, key_env))}"
