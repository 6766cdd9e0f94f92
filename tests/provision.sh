#!/usr/bin/env bash
# Provision the real components the suite drives (TESTBED.md): a Docker Engine, busybox for tiny
# images, rpm/dnf/createrepo_c for real repositories and libsolv, systemd-nspawn and debootstrap
# for the booted-host tests. Needs root for apt-get; without root it only reports what is missing
# (the tests that need a missing piece then skip, which CI=true turns into failures).
set -euo pipefail
PACKAGES=(docker.io runc busybox-static rpm dnf createrepo-c dnf-plugins-core systemd-container debootstrap iproute2 strace)
need=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || need+=("$p")
done
if [ ${#need[@]} -eq 0 ]; then
  exit 0
fi
if [ "$(id -u)" != 0 ]; then
  echo "provision: missing ${need[*]}; run as root to install them (tests needing them will skip)" >&2
  exit 0
fi
echo "provision: apt-get install ${need[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
