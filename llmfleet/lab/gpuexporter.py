"""A STAND-IN accelerator exporter for a monitor lab (``llmfleet lab up --monitor``).

The lab has no GPUs, yet the monitor deploy must scrape an accelerator exporter
at its vendor's port and ``llmfleet top`` must read its metric names.  So the
exporter host of a monitor lab (the last host, when there are two or more) gets a
small HTTP server on NVIDIA dcgm-exporter's port that serves, in dcgm-exporter's
own metric names and labels (files/monitoring/exporters.yaml), the four H200s
recorded in ``tests/fixtures/hosts/h200x4-vm`` as ``nvidia-smi`` saw them:
memory in use and total, utilisation, temperature, no Xid, no ECC errors.

It is not NVIDIA's program: the unit's description, the script's first lines and
every response's ``# STAND-IN`` comment say so.  The inventory gives that host
``accelerator_exporter: nvidia`` (``llmfleet/lab/inventory.py``).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from ..monitorplan import exporters
from .vendor import fixture

VENDOR = "nvidia"
RECORDING = "h200x4-vm"
SCRIPT = "/usr/local/bin/llmfleet-standin-dcgm-exporter"
METRICS = "/usr/share/llmfleet-standin/dcgm-exporter.prom"
UNIT = "/etc/systemd/system/" + str(exporters()[VENDOR]["unit"])
WANTS = "/etc/systemd/system/multi-user.target.wants/" + str(exporters()[VENDOR]["unit"])


def exporter_host(state: dict[str, Any]) -> str | None:
    """The host that gets the stand-in: a monitor lab's last host (not the first, which
    runs Prometheus), when it has two or more."""
    hosts = state.get("hosts") or []
    if not state.get("monitor") or len(hosts) < 2:
        return None
    return hosts[-1]["name"]


# one GPU's second row of the `nvidia-smi` table: fan, temp, perf, power | memory | util
_ROW = re.compile(r"^\|\s+\S+\s+(\d+)C\s.*?\|\s+(\d+)MiB\s*/\s*\d+MiB\s+\|\s+(\d+)%", re.M)


def recorded_gpus() -> list[dict[str, Any]]:
    """Index, name, UUID, bus id, memory total and in use (MiB), utilisation (%) and
    temperature (C) of each recorded GPU."""
    rows = fixture(RECORDING, "nvidia-smi-query.txt").strip().splitlines()[1:]
    table = _ROW.findall(fixture(RECORDING, "nvidia-smi.txt"))
    gpus = []
    for row, (temp, used, util) in zip(rows, table, strict=True):
        index, name, uuid, bus, total = (c.strip() for c in row.split(",")[:5])
        gpus.append(
            {
                "index": index,
                "name": name,
                "uuid": uuid,
                "bus": bus,
                "total_mib": int(total.split()[0]),
                "used_mib": int(used),
                "util": int(util),
                "temp": int(temp),
            }
        )
    return gpus


def metrics_text(hostname: str) -> str:
    """The exposition text, in dcgm-exporter's names and labels."""
    names = exporters()[VENDOR]["metrics"]
    series = {
        names["util"]: ("gauge", "GPU utilization (in %).", lambda g: g["util"]),
        names["mem_used"]: ("gauge", "Framebuffer memory used (in MiB).", lambda g: g["used_mib"]),
        names["mem_free"]: (
            "gauge",
            "Framebuffer memory free (in MiB).",
            lambda g: g["total_mib"] - g["used_mib"],
        ),
        names["temp"]: ("gauge", "GPU temperature (in C).", lambda g: g["temp"]),
        "DCGM_FI_DEV_XID_ERRORS": (
            "gauge",
            "Value of the last XID error encountered.",
            lambda g: 0,
        ),
        "DCGM_FI_DEV_ECC_DBE_VOL_TOTAL": (
            "counter",
            "Total number of double-bit volatile ECC errors.",
            lambda g: 0,
        ),
    }
    lines = [f"# STAND-IN for NVIDIA dcgm-exporter (llmfleet lab): recorded {RECORDING} GPUs"]
    gpus = recorded_gpus()
    for metric, (kind, doc, value) in series.items():
        lines += [f"# HELP {metric} {doc}", f"# TYPE {metric} {kind}"]
        for g in gpus:
            labels = (
                f'gpu="{g["index"]}",UUID="{g["uuid"]}",pci_bus_id="{g["bus"]}",'
                f'device="nvidia{g["index"]}",modelName="{g["name"]}",Hostname="{hostname}"'
            )
            lines.append(f"{metric}{{{labels}}} {value(g)}")
    return "\n".join(lines) + "\n"


def server_script(port: int) -> str:
    return (
        "#!/usr/bin/python3\n"
        "# llmfleet lab STAND-IN for NVIDIA dcgm-exporter: not NVIDIA's program.\n"
        "# Serves recorded metrics (llmfleet/lab/gpuexporter.py) at /metrics.\n"
        "import http.server\n\n"
        f"BODY = open({METRICS!r}, 'rb').read()\n\n\n"
        "class Handler(http.server.BaseHTTPRequestHandler):\n"
        "    def do_GET(self):\n"
        "        ok = self.path.split('?')[0] == '/metrics'\n"
        "        self.send_response(200 if ok else 404)\n"
        "        self.send_header('Content-Type', 'text/plain; version=0.0.4')\n"
        "        self.end_headers()\n"
        "        self.wfile.write(BODY if ok else b'not found\\n')\n\n"
        "    def log_message(self, *args):\n"
        "        pass\n\n\n"
        f"http.server.ThreadingHTTPServer(('', {int(port)}), Handler).serve_forever()\n"
    )


def unit_text() -> str:
    return (
        "[Unit]\nDescription=NVIDIA DCGM exporter (llmfleet lab STAND-IN)\n\n"
        f"[Service]\nExecStart={SCRIPT}\nRestart=always\nDynamicUser=yes\n\n"
        "[Install]\nWantedBy=multi-user.target\n"
    )


def place(host: dict[str, Any], wanted: bool) -> None:
    """Put the stand-in (script, recorded metrics, enabled unit) into the host's root
    before it boots, or take it away."""
    root = Path(host["root"])
    paths = {SCRIPT: (server_script(exporters()[VENDOR]["port"]), 0o755)}
    paths[METRICS] = (metrics_text(host["name"]), 0o644)
    paths[UNIT] = (unit_text(), 0o644)
    wants = root / WANTS.lstrip("/")
    for path, (text, mode) in paths.items():
        target = root / path.lstrip("/")
        if not wanted:
            target.unlink(missing_ok=True)
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
        target.chmod(mode)
    if wanted and not wants.is_symlink():
        wants.parent.mkdir(parents=True, exist_ok=True)
        wants.symlink_to(UNIT)
    elif not wanted and wants.is_symlink():
        wants.unlink()
