#!/usr/bin/env python3
"""Wait, bounded, until the engine is really serving; say what went wrong if not.

/health can answer before the model is ready, so this also checks that
/v1/models lists the served name and that one real chat completion returns.
If the unit dies meanwhile, it stops waiting at once and prints the journal.

A headless worker of a multi-node server (``--connect ADDR``) serves no HTTP: it is
judged by its unit staying up while its processes hold an established TCP connection
to rank 0's address (its sockets matched with /proc/net/tcp{,6}) for ``--settle``
seconds on end; a worker that connects and drops again is not a member.  Any port
counts: vLLM's data-parallel ranks meet on the rendezvous port, then talk over ports
the engine picks and close the rendezvous.
Standard library only: it runs with the host's python3.
"""

import argparse
import ipaddress
import json
import os
import socket
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


def _hex_endpoint(text: str) -> tuple[str, int]:
    """/proc/net/tcp's ``0100007F:1F90`` (little-endian words) as (address, port)."""
    addr, port = text.split(":")
    raw = bytes.fromhex(addr)
    if len(raw) == 4:
        ip = ipaddress.IPv4Address(raw[::-1])
    else:  # four little-endian 32-bit words
        ip = ipaddress.IPv6Address(b"".join(raw[i : i + 4][::-1] for i in range(0, 16, 4)))
        ip = ip.ipv4_mapped or ip
    return str(ip), int(port, 16)


def _established_rows():
    """(local, remote, socket inode) of every established TCP connection here."""
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as fh:
                rows = fh.read().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            cols = row.split()
            if len(cols) > 9 and cols[3] == "01":  # TCP_ESTABLISHED
                yield _hex_endpoint(cols[1]), _hex_endpoint(cols[2]), cols[9]


def unit_sockets(unit: str) -> set[str] | None:
    """The socket inodes held by the unit's processes (its cgroup, every hierarchy
    layout); None when none can be read (a docker engine runs in the container's
    cgroup, not the unit's), and then every connection of the host counts."""
    cg = subprocess.run(
        ["systemctl", "show", unit, "-p", "ControlGroup", "--value"],
        capture_output=True,
        text=True,
    ).stdout.strip()
    pids: set[str] = set()
    for root in ("/sys/fs/cgroup", "/sys/fs/cgroup/unified", "/sys/fs/cgroup/systemd"):
        for d, _, names in os.walk(root + cg) if cg else ():
            if "cgroup.procs" in names:
                with open(os.path.join(d, "cgroup.procs")) as fh:
                    pids.update(fh.read().split())
    inodes = set()
    for pid in pids:
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                link = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if link.startswith("socket:["):
                inodes.add(link[8:-1])
    return inodes or None


def peers(unit: str) -> set[str]:
    """The remote addresses the unit's processes hold established connections to: a
    multi-node engine keeps several (its rendezvous port is only the first), so a
    member is linked to another when any of them goes there."""
    mine = unit_sockets(unit)
    return {r[0] for _, r, inode in _established_rows() if mine is None or inode in mine}


def resolve(addresses: list[str]) -> set[str]:
    """``ADDR`` or ``ADDR:PORT`` (a name or an IP) as the IPs the kernel shows."""
    out = set()
    for a in addresses:
        name = a.rsplit(":", 1)[0] if a.count(":") == 1 else a
        for info in socket.getaddrinfo(name.strip("[]"), None, proto=socket.IPPROTO_TCP):
            out.add(str(ipaddress.ip_address(info[4][0])))
    return out


def unit_died(unit: str, restarts0: int) -> str | None:
    state, restarts = unit_state(unit)
    if restarts > restarts0:
        return f"{unit} exited and systemd restarted it ({restarts} restarts)"
    if state in ("failed", "inactive"):
        return f"{unit} is {state}"
    return None


def fail(stage: str, error: str, unit: str) -> int:
    print(json.dumps({"ok": False, "stage": stage, "error": error, "journal": journal(unit, 40)}))
    return 1


def worker(a: argparse.Namespace) -> int:
    """A headless rank: up, and linked to rank 0 for ``settle`` seconds on end."""
    start, since = time.time(), None
    _, restarts0 = unit_state(a.unit)
    try:
        wanted = resolve(a.connect)
    except (OSError, ValueError) as exc:
        return fail("connect", f"cannot resolve {a.connect}: {exc}", a.unit)
    while time.time() - start < a.timeout:
        died = unit_died(a.unit, restarts0)
        if died:
            return fail("process", died, a.unit)
        if wanted <= peers(a.unit):
            since = since or time.time()
            if time.time() - since >= a.settle:
                seconds = round(time.time() - start, 1)
                shown = ", ".join(sorted(wanted))
                print(json.dumps({"ok": True, "seconds": seconds, "connected": shown}))
                return 0
        else:
            since = None
        time.sleep(1)
    return fail(
        "connect",
        f"not connected to rank 0 at {', '.join(a.connect)} after {a.timeout:.0f}s",
        a.unit,
    )


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--model", required=True)
    p.add_argument("--unit", default="llmfleet-serve")
    p.add_argument("--timeout", type=float, default=600)
    p.add_argument("--prompt", default="Say hello.")
    p.add_argument("--env-file", default="/etc/llmfleet/serve.env")
    p.add_argument("--key-env", help="the env-file variable holding the endpoint key")
    p.add_argument(
        "--connect",
        action="append",
        metavar="ADDR",
        help="judge a headless worker: its engine connected to rank 0 at ADDR (no HTTP)",
    )
    p.add_argument("--settle", type=float, default=5, help="worker: seconds connected on end")
    a = p.parse_args()
    if a.connect:
        return worker(a)
    key = api_key(a.env_file, a.key_env) if a.key_env else None
    if key:
        HEADERS["Authorization"] = f"Bearer {key}"
    base = f"http://127.0.0.1:{a.port}"
    start, stage, last_error = time.time(), "health", ""
    _, restarts0 = unit_state(a.unit)
    while time.time() - start < a.timeout:
        died = unit_died(a.unit, restarts0)
        if died:
            return fail(stage, died, a.unit)
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
    return fail(stage, f"not healthy after {a.timeout:.0f}s: {last_error}", a.unit)


if __name__ == "__main__":
    sys.exit(main())
