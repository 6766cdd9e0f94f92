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

# Root or not: a cache of ours is fetched only by root (or into a folder the caller named).
fetch_ok() { [ "$(id -u)" = 0 ] || [ -n "${1:-}" ]; }

# A second real Engine, 26.1.5: Debian trixie's docker.io with its containerd, runc, tini and CLI (docs/testbed.md 10),
# downloaded with a sources list of its own and unpacked with dpkg -x into a cache outside the repository;
# nothing of it is installed. Engine 26 is where `dockerd --validate` and CDI are real (20.10 has neither).
ENGINE26=${GPUPREP_ENGINE26:-/var/cache/gpuprep-tests/engine26}
if [ ! -x "$ENGINE26/usr/sbin/dockerd" ]; then
  if ! fetch_ok "${GPUPREP_ENGINE26:-}"; then
    echo "provision: no Engine 26 in $ENGINE26; run as root to fetch it (tests needing it will skip)" >&2
  else
    echo "provision: Engine 26 (trixie's docker.io) into $ENGINE26" >&2
    bash "$(dirname "$0")/debian_fetch.sh" trixie "$ENGINE26" docker.io containerd runc tini docker-cli
    "$ENGINE26/usr/sbin/dockerd" --version >/dev/null  # it runs here (glibc >= 2.34), or provisioning fails
  fi
fi

# A third real Engine, 28.5.2: Debian sid's docker.io with containerd 2.1.9, tini and the CLI (docs/testbed.md 12).
# CDI is on by default from 28.2. sid's runc needs glibc 2.38, so none is fetched: the tests give it Debian 12's runc;
# tini-static is docker-init (sid split it out of tini, whose dynamic binary needs glibc 2.38 too).
ENGINE28=${GPUPREP_ENGINE28:-/var/cache/gpuprep-tests/engine28}
if [ ! -x "$ENGINE28/usr/sbin/dockerd" ] || [ ! -x "$ENGINE28/usr/bin/docker-init" ]; then
  if ! fetch_ok "${GPUPREP_ENGINE28:-}"; then
    echo "provision: no Engine 28 in $ENGINE28; run as root to fetch it (tests needing it will skip)" >&2
  else
    echo "provision: Engine 28 (sid's docker.io) into $ENGINE28" >&2
    bash "$(dirname "$0")/debian_fetch.sh" sid "$ENGINE28" docker.io containerd tini-static docker-cli
    "$ENGINE28/usr/sbin/dockerd" --version >/dev/null
  fi
fi

# NVIDIA's real container toolkit (docs/testbed.md 12): the builds from NVIDIA's source in the shared folder beside
# the repository (../shared/toolkit: a CI clone has shared/ beside it too), unpacked per version into
# TOOLKIT/<version>/bin (nvidia-ctk, nvidia-container-runtime, nvidia-cdi-hook, nvidia-container-runtime-hook) and
# libnvidia-container's nvidia-container-cli into TOOLKIT/libnvidia-container-<version>/. A tarball is unpacked again
# only when its checksum changed (TOOLKIT/<version>/.sha256).
TOOLKIT=${GPUPREP_TOOLKIT:-/var/cache/gpuprep-tests/toolkit}
TOOLKIT_SRC=${GPUPREP_TOOLKIT_SRC:-$(cd "$(dirname "$0")/.." && pwd)/../shared/toolkit}
if ! ls "$TOOLKIT_SRC"/nvidia-container-toolkit-*-linux-amd64.tar.xz >/dev/null 2>&1; then
  echo "provision: no toolkit builds in $TOOLKIT_SRC (nvidia-container-toolkit-VERSION-linux-amd64.tar.xz); the tests" \
       "with NVIDIA's real runtime will skip" >&2
elif ! fetch_ok "${GPUPREP_TOOLKIT:-}"; then
  echo "provision: run as root to unpack NVIDIA's toolkit into $TOOLKIT (tests needing it will skip)" >&2
else
  for tarball in "$TOOLKIT_SRC"/nvidia-container-toolkit-*-linux-amd64.tar.xz \
                 "$TOOLKIT_SRC"/libnvidia-container-*-linux-amd64.tar.xz; do
    [ -e "$tarball" ] || continue
    name=$(basename "$tarball" -linux-amd64.tar.xz)
    dest=$TOOLKIT/${name#nvidia-container-toolkit-}
    sum=$(sha256sum "$tarball" | cut -d' ' -f1)
    [ "$(cat "$dest/.sha256" 2>/dev/null)" = "$sum" ] && continue
    echo "provision: $name into $dest" >&2
    rm -rf "$dest.new" && mkdir -p "$dest.new" && tar -C "$dest.new" -xJf "$tarball"
    echo "$sum" > "$dest.new/.sha256"
    rm -rf "$dest" && mv "$dest.new" "$dest"
  done
  "$TOOLKIT/1.20.0/bin/nvidia-ctk" --version >/dev/null
fi
