#!/usr/bin/env bash
# Debian packages the control machine needs for `llmfleet lab`: debootstrap
# builds the host rootfs, systemd-nspawn (systemd-container) boots it,
# iproute2 makes the bridge/netns/veths, openssh-client reaches the hosts,
# gnupg signs the stand-in vendor apt repositories (dpkg-deb, from dpkg, builds
# their packages) and the lab's Debian mirror; `lab up --docker` builds the engine
# image with buildah and serves it from a docker-registry "outside" the lab site;
# prometheus brings promtool, which the tests use to check and unit-test the alert
# rules and configs the monitor deploy writes (its own daemon is not wanted here).
# Idempotent and quiet: installs only what is missing, as root, with apt-get
# (so it uses whatever mirror/proxy this machine's apt is configured with).
set -euo pipefail

packages=(
  debootstrap
  systemd-container
  iproute2
  openssh-client
  debian-archive-keyring
  ca-certificates
  curl
  procps
  gnupg
  buildah
  docker-registry
  prometheus
)

missing=()
for pkg in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed'; then
    missing+=("$pkg")
  fi
done

if [ "${#missing[@]}" -eq 0 ]; then
  exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
  echo "lab-prereqs: need root to install: ${missing[*]}" >&2
  exit 1
fi

log="$(mktemp)"
trap 'rm -f "$log"' EXIT
export DEBIAN_FRONTEND=noninteractive
if ! { apt-get update -qq && apt-get install -y -qq --no-install-recommends "${missing[@]}"; } >"$log" 2>&1; then
  cat "$log" >&2
  echo "lab-prereqs: apt-get failed installing: ${missing[*]}" >&2
  exit 1
fi
echo "lab-prereqs: installed ${missing[*]}"
# The lab runs its own docker-registry on the bridge (llmfleet/lab/images.py); the
# package's own service (all addresses, port 5000) is not wanted on the control machine.
if [[ " ${missing[*]} " == *" docker-registry "* ]] && [ -d /run/systemd/system ]; then
  systemctl disable --now docker-registry.service >/dev/null 2>&1 || true
fi
# Likewise Prometheus: only promtool is wanted on the control machine.
if [[ " ${missing[*]} " == *" prometheus "* ]]; then
  if [ -d /run/systemd/system ]; then
    systemctl disable --now prometheus.service >/dev/null 2>&1 || true
  else
    service prometheus stop >/dev/null 2>&1 || true
    update-rc.d prometheus disable >/dev/null 2>&1 || true
  fi
fi
