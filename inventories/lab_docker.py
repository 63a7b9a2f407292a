"""The local lab on the guides' docker path: each host runs the engine with
``docker run`` of the lab image pinned by digest, pulled through a site registry.

    llmfleet lab up --docker
    pyinfra inventories/lab_docker.py deploys/registry.py --limit lab1
    pyinfra inventories/lab_docker.py deploys/serve.py

lab1 runs the site registry (Debian's docker-registry, a pull-through cache of
the lab's "outside" registry on the bridge's gateway), every host pulls
through it; see llmfleet/lab/images.py for how the image is built.
"""

import sys

from llmfleet.lab.inventory import docker_hosts

try:
    lab = docker_hosts()
except RuntimeError as exc:  # no lab, or no registry: say how to start one
    sys.exit(f"inventories/lab_docker.py: {exc}")
