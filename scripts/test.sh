#!/usr/bin/env bash
# The whole test suite, from a fresh Debian machine (as root): installs what
# it needs, then runs pytest.  CI (.ci/run) calls exactly this.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -x scripts/lab-prereqs.sh ]; then scripts/lab-prereqs.sh; fi
python3 -m pip install -q --disable-pip-version-check -e '.[test,lab,bench]'
exec python3 -m pytest -ra --durations=25 "$@"
