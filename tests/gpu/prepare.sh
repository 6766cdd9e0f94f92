#!/usr/bin/env bash
# Prepare, on this (development) machine, what tests/gpu/real_gpu.sh needs on the accelerator machine, which
# reaches no registry: git-ignored folders in the repository root, carried there by the device tool.
#
#   .dev/engineNN.tar.xz  bin/ with Docker Engine NN (ENGINE=26: 26.1.5 as Debian trixie ships it; ENGINE=28: 28.5.2
#                         as Debian sid ships it) (dockerd, docker, containerd, containerd-shim-runc-v2, runc,
#                         tini-static and its docker-init link) and busybox (Debian 12's busybox-static) for the test
#                         image. Binaries: never committed.
#   .dev/toolkit/         NVIDIA's container toolkit builds from ../shared/toolkit/ (TOOLKITS, default 1.17.8 1.18.0
#                         1.20.0) and libnvidia-container's, as they are there (tar.xz).
#   .whl/                 gpuprep's wheel built from this checkout and every dependency setup.py names (and theirs),
#                         for CPython 3.12 on manylinux x86_64 (the accelerator machine's python3).
#
#   .dev/baseline/gpuprep gpuprep/ of the commit BASELINE (default main): doctor's "before" in the same timing run.
#
#   [ENGINE=26|28] [TOOLKITS="1.18.0 1.20.0"] [BASELINE=REF] bash tests/gpu/prepare.sh [--stage DIR]
#
# --stage DIR also copies this checkout's tracked files (committed or not) plus .dev and .whl into DIR: for a
# session whose device tool sends another checkout than this one (a helper's worktree), DIR being an ignored
# folder of the checkout that travels (its /.device/), named in `carry`.
#
# Engine 26's dockerd, containerd, runc and tini come from tests/provision.sh's cache (docs/testbed.md 10); the
# docker CLI too where that cache has it (provisioned before it fetched docker-cli: then tests/trixie_fetch.sh
# fetches it into a cache beside it).
set -euo pipefail

cd "$(dirname "$0")/../.."
REPO=$PWD
ENGINE=${ENGINE:-26}
TOOLKITS=${TOOLKITS:-"1.17.8 1.18.0 1.20.0"}
SHARED_TOOLKIT=${GPUPREP_SHARED_TOOLKIT:-$(cd "$(dirname "$0")/../../.." && pwd)/shared/toolkit}
ENGINE26=${GPUPREP_ENGINE26:-/var/cache/gpuprep-tests/engine$ENGINE}
[ "$ENGINE" = 26 ] || ENGINE26=${GPUPREP_ENGINE28:-/var/cache/gpuprep-tests/engine$ENGINE}
CLI26=${GPUPREP_CLI26:-/var/cache/gpuprep-tests/docker-cli$ENGINE}
STAGE=""
if [ "${1:-}" = "--stage" ]; then STAGE=${2:?--stage needs a directory}; fi

[ -x "$ENGINE26/usr/sbin/dockerd" ] || { echo "prepare: no Engine $ENGINE in $ENGINE26: run tests/provision.sh as root" >&2; exit 1; }
BUSYBOX=$(command -v busybox || true)
[ -n "$BUSYBOX" ] && file -L "$BUSYBOX" 2>/dev/null | grep -q "statically linked" \
  || { echo "prepare: needs a static busybox (apt-get install busybox-static)" >&2; exit 1; }

if [ -x "$ENGINE26/usr/bin/docker" ]; then
  CLI26=$ENGINE26  # provisioned with the CLI
elif [ ! -x "$CLI26/usr/bin/docker" ]; then
  echo "prepare: the docker CLI 26 (trixie's docker-cli) into $CLI26" >&2
  bash tests/trixie_fetch.sh "$CLI26" docker-cli
fi

# -- .dev/engineNN.tar.xz ---------------------------------------------------------------------------------------
mkdir -p .dev
bin=$(mktemp -d)
mkdir "$bin/bin"
# Engine 28's cache holds no runc (on Debian 12 the tests pass Debian 12's: sid's needs glibc 2.38): trixie's, from
# Engine 26's cache, runs on the accelerator machine (Ubuntu 24.04, glibc 2.39).
RUNC="$ENGINE26/usr/sbin/runc"
[ -x "$RUNC" ] || RUNC=${GPUPREP_ENGINE26:-/var/cache/gpuprep-tests/engine26}/usr/sbin/runc
cp -L "$ENGINE26/usr/sbin/dockerd" "$RUNC" "$ENGINE26/usr/bin/containerd" \
      "$ENGINE26/usr/bin/containerd-shim-runc-v2" "$ENGINE26/usr/bin/tini-static" "$CLI26/usr/bin/docker" \
      "$BUSYBOX" "$bin/bin/"
ln -s tini-static "$bin/bin/docker-init"
# trixie's runc needs glibc 2.38 (Debian 12 has 2.36; Ubuntu 24.04 has 2.39): its version is read there.
for b in dockerd docker containerd; do "$bin/bin/$b" --version >> "$bin/VERSIONS"; done
tar -C "$bin" -c bin VERSIONS | xz -T0 -9 > ".dev/engine$ENGINE.tar.xz.new"
mv ".dev/engine$ENGINE.tar.xz.new" ".dev/engine$ENGINE.tar.xz"
rm -rf "$bin"

# -- .dev/toolkit/: NVIDIA's builds, as ../shared/toolkit/ holds them -------------------------------------------
rm -rf .dev/toolkit && mkdir -p .dev/toolkit
for v in $TOOLKITS; do
  cp "$SHARED_TOOLKIT/nvidia-container-toolkit-$v-linux-amd64.tar.xz" .dev/toolkit/ \
    || { echo "prepare: no toolkit $v in $SHARED_TOOLKIT" >&2; exit 1; }
done
cp "$SHARED_TOOLKIT"/libnvidia-container-*-linux-amd64.tar.xz .dev/toolkit/

# -- .whl/ ------------------------------------------------------------------------------------------------------
rm -rf .whl && mkdir .whl
python3 -m pip wheel -q --no-deps --no-build-isolation -w .whl . 2>/dev/null \
  || python3 -m pip wheel -q --no-deps -w .whl .
# Every dependency for the target (CPython 3.12, manylinux x86_64), resolved by pip for that platform: setup.py's
# install_requires and what they require. One version of each.
python3 -m pip download -q --only-binary=:all: --python-version 3.12 --implementation cp --abi cp312 \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
  --platform manylinux_2_5_x86_64 --platform manylinux1_x86_64 -d .whl .whl/gpuprep-*.whl 2>&1 | grep -v "is ignored" || true
ls .whl | sed 's/^/prepare: wheel /' >&2

# -- .dev/baseline/gpuprep: the commit doctor's timing is compared with, in the same run (default main) ------------
rm -rf .dev/baseline && mkdir -p .dev/baseline
git archive "${BASELINE:-main}" gpuprep | tar -x -C .dev/baseline
echo "prepare: baseline gpuprep of $(git rev-parse --short "${BASELINE:-main}") in .dev/baseline" >&2

# -- the size that travels --------------------------------------------------------------------------------------
tracked=$(git ls-files -z --cached --others --exclude-standard | xargs -0 du -cb 2>/dev/null | tail -1 | cut -f1)
carried=$(du -cb .dev .whl | tail -1 | cut -f1)
echo "prepare: .dev $(du -sh .dev | cut -f1), .whl $(du -sh .whl | cut -f1); tree ${tracked} B + carried ${carried} B" \
     "= $(( (tracked + carried) / 1048576 )) MiB (limit 64 MiB)" >&2

if [ -n "$STAGE" ]; then
  rm -rf "$STAGE" && mkdir -p "$STAGE"
  git ls-files -z --cached --others --exclude-standard | xargs -0 cp --parents -t "$STAGE"
  cp -r .dev .whl "$STAGE/"
  echo "prepare: staged this checkout with .dev and .whl in $STAGE ($(du -sh "$STAGE" | cut -f1))" >&2
fi
