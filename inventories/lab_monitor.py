"""The local lab, monitored: ``llmfleet lab up --monitor``, then

    pyinfra inventories/lab_monitor.py deploys/serve.py
    pyinfra inventories/lab_monitor.py deploys/monitor.py
    llmfleet top inventories/lab_monitor.py

lab1 runs Prometheus and Alertmanager; every host runs the node exporter and serves
the lab recipe with its metrics on; the last host (of two or more) carries a
STAND-IN of NVIDIA's dcgm-exporter (llmfleet/lab/gpuexporter.py), scraped as an
NVIDIA host's exporter.
"""

import sys

from llmfleet.lab.inventory import monitor_hosts

try:
    lab = monitor_hosts()
except RuntimeError as exc:
    sys.exit(f"inventories/lab_monitor.py: {exc}")
