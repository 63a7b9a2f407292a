#!/usr/bin/env bash
# The README's first command: on a fresh Debian machine, as root, set up the
# control machine, bring up the local lab (systemd-nspawn hosts over SSH, a
# local Hub and wheelhouse), run the serve deploy on it, and send one chat
# request to every lab host.  Safe to run again: each step is idempotent.
#
#   LLMFLEET_LAB_HOSTS=3 scripts/quickstart.sh     # more hosts
set -euo pipefail
cd "$(dirname "$0")/.."
start=$(date +%s)
step() { printf '\n==> %s (%ss)\n' "$1" "$(( $(date +%s) - start ))"; }

step "control machine: Debian packages for the lab, llmfleet and pyinfra"
scripts/lab-prereqs.sh
python3 -m pip install -q --disable-pip-version-check -e '.[lab]' 2>&1 \
  | grep -v -e "^WARNING: Location" -e "Running pip as the 'root' user" || true

step "lab up: ${LLMFLEET_LAB_HOSTS:-2} hosts"
python3 -m llmfleet lab up --hosts "${LLMFLEET_LAB_HOSTS:-2}"

step "serve deploy: pyinfra inventories/lab.py deploys/serve.py"
python3 -m pyinfra -y inventories/lab.py deploys/serve.py

step "one chat request per lab host"
python3 -m llmfleet lab chat
printf '\nquick start done: wall time %ss\n' "$(( $(date +%s) - start ))"
