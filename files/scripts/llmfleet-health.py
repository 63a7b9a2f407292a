#!/usr/bin/env python3
"""Wait, bounded, until the engine is really serving; say what went wrong if not.

/health can answer before the model is ready, so this also checks that
/v1/models lists the served name and that one real chat completion returns.
If the unit dies meanwhile, it stops waiting at once and prints the journal.
Standard library only: it runs with the host's python3.
"""

import argparse
import json
import subprocess
import sys
import time
import urllib.error
import urllib.request

HEADERS = {"Content-Type": "application/json"}


def api_key(env_file: str, key_env: str) -> str | None:
    """The endpoint key from the unit's 0600 env file (we run as root); never from argv."""
    try:
        with open(env_file) as fh:
            lines = fh.read().splitlines()
    except OSError:
        return None
    for line in lines:
        if line.startswith(f"{key_env}="):
            return line.split("=", 1)[1].strip().strip("'\"")
    return None


def get(url: str, body: dict | None = None, timeout: float = 30):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, headers=HEADERS)
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        text = resp.read().decode()
    return json.loads(text) if text.strip() else {}


def unit_state(unit: str) -> tuple[str, int]:
    """(ActiveState, NRestarts): a crash shows as a restart count going up, since
    Restart=on-failure hides it behind "activating" until the start limit is hit."""
    out = subprocess.run(
        ["systemctl", "show", unit, "-p", "ActiveState", "-p", "NRestarts"],
        capture_output=True,
        text=True,
    )
    props = dict(line.split("=", 1) for line in out.stdout.splitlines() if "=" in line)
    return props.get("ActiveState", "unknown"), int(props.get("NRestarts") or 0)


def journal(unit: str, lines: int) -> str:
    out = subprocess.run(
        ["journalctl", "-u", unit, "-n", str(lines), "--no-pager", "-o", "cat"],
        capture_output=True,
        text=True,
    )
    return out.stdout


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--model", required=True)
    p.add_argument("--unit", default="llmfleet-serve")
    p.add_argument("--timeout", type=float, default=600)
    p.add_argument("--prompt", default="Say hello.")
    p.add_argument("--env-file", default="/etc/llmfleet/serve.env")
    p.add_argument("--key-env", help="the env-file variable holding the endpoint key")
    a = p.parse_args()
    key = api_key(a.env_file, a.key_env) if a.key_env else None
    if key:
        HEADERS["Authorization"] = f"Bearer {key}"
    base = f"http://127.0.0.1:{a.port}"
    start, stage, last_error = time.time(), "health", ""
    _, restarts0 = unit_state(a.unit)
    while time.time() - start < a.timeout:
        state, restarts = unit_state(a.unit)
        if state in ("failed", "inactive") or restarts > restarts0:
            why = (
                f"{a.unit} is {state}"
                if restarts == restarts0
                else f"{a.unit} exited and systemd restarted it ({restarts} restarts)"
            )
            print(
                json.dumps(
                    {
                        "ok": False,
                        "stage": stage,
                        "unit": state,
                        "error": why,
                        "journal": journal(a.unit, 40),
                    }
                )
            )
            return 1
        try:
            stage = "health"
            get(f"{base}/health", timeout=5)
            stage = "models"
            models = [m["id"] for m in get(f"{base}/v1/models", timeout=10).get("data", [])]
            if a.model not in models:
                raise RuntimeError(f"/v1/models lists {models}, not {a.model!r}")
            stage = "completion"
            reply = get(
                f"{base}/v1/chat/completions",
                {
                    "model": a.model,
                    "max_tokens": 8,
                    "temperature": 0,
                    "messages": [{"role": "user", "content": a.prompt}],
                },
                timeout=120,
            )
            text = reply["choices"][0]["message"].get("content") or ""
            print(
                json.dumps(
                    {
                        "ok": True,
                        "seconds": round(time.time() - start, 1),
                        "reply": text,
                        "usage": reply.get("usage", {}),
                    }
                )
            )
            return 0
        except (urllib.error.URLError, ConnectionError, OSError, RuntimeError, KeyError) as exc:
            last_error = f"{type(exc).__name__}: {exc}"
            time.sleep(2)
    print(
        json.dumps(
            {
                "ok": False,
                "stage": stage,
                "error": f"not healthy after {a.timeout:.0f}s: {last_error}",
                "journal": journal(a.unit, 40),
            }
        )
    )
    return 1


if __name__ == "__main__":
    sys.exit(main())
