#!/usr/bin/env bash
# Provision the real components the suite drives (docs/testbed.md): a Docker Engine, busybox for tiny
# images, rpm/dnf/createrepo_c for real repositories and libsolv, systemd-nspawn and debootstrap
# for the booted-host tests. Needs root for apt-get; without root it only reports what is missing
# (the tests that need a missing piece then skip, which CI=true turns into failures).
set -euo pipefail
# The fleet tools (integrations/): packer validates the Packer template offline, promtool (package prometheus)
# lints doctor's textfile, openssh-client is Ansible's connection to the simulated hosts. On a machine with
# systemd, installing prometheus and prometheus-node-exporter also starts them (the tests run their own).
# gcc builds the stand-in libnvidia-ml.so.1 of the wheelhouse test (tests/fake_nvml.py).
PACKAGES=(docker.io runc busybox-static rpm dnf createrepo-c dnf-plugins-core systemd-container debootstrap iproute2 strace
          gcc packer prometheus prometheus-node-exporter openssh-client)
need=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || need+=("$p")
done
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ]; then
    echo "provision: missing ${need[*]}; run as root to install them (tests needing them will skip)" >&2
  else
    echo "provision: apt-get install ${need[*]}" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
  fi
fi

# The floor Python (pyproject.toml's requires-python, 3.9: Amazon Linux 2023's python3) for
# tests/integration/test_wheelhouse.py: pyenv's on these machines. It cannot be provisioned from the registries
# reachable here (pyenv builds from python.org's sources; Debian 12 has no python3.9, and bullseye's cannot be
# installed beside bookworm's python3 whole: its distutils and venv name bullseye's python3), so a machine
# without one is said here, and the test fails under CI=true.
if ! python3 "$(dirname "$0")/distkit.py" floor-python >/dev/null; then
  echo "provision: no CPython 3.9 (pyenv's, or python3.9 on PATH): tests/integration/test_wheelhouse.py needs one" >&2
fi

# A second real Engine, 26.1.5: Debian trixie's docker.io with its containerd, runc, tini and CLI (docs/testbed.md 10),
# downloaded with a sources list of its own and unpacked with dpkg -x into a cache outside the repository;
# nothing of it is installed. Engine 26 is where `dockerd --validate` and CDI are real (20.10 has neither).
ENGINE26=${GPUPREP_ENGINE26:-/var/cache/gpuprep-tests/engine26}
if [ ! -x "$ENGINE26/usr/sbin/dockerd" ]; then
  if [ "$(id -u)" != 0 ] && [ -z "${GPUPREP_ENGINE26:-}" ]; then
    echo "provision: no Engine 26 in $ENGINE26; run as root to fetch it (tests needing it will skip)" >&2
    exit 0
  fi
  echo "provision: Engine 26 (trixie's docker.io) into $ENGINE26" >&2
  bash "$(dirname "$0")/trixie_fetch.sh" "$ENGINE26" docker.io containerd runc tini docker-cli
  "$ENGINE26/usr/sbin/dockerd" --version >/dev/null  # it runs here (glibc >= 2.34), or provisioning fails
fi
