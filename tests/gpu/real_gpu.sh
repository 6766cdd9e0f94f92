#!/usr/bin/env bash
# gpuprep on a real GPU host with NVIDIA's real container toolkit (issues 14, 18, 22, 25): the accelerator machine of
# docs/testbed.md 7 and 10 (Ubuntu 24.04, the NVIDIA driver, python3 3.12, no Docker, no registry).
# tests/gpu/README.md says how to run it.
#
#   OUT=DIR bash tests/gpu/real_gpu.sh [smoke|full] [ENGINE]
#
# ENGINE: 26 or 28 (default: the first of .dev/engine26.tar.xz, .dev/engine28.tar.xz that exists).
# Needs, in the repository root (tests/gpu/prepare.sh makes them here): .dev/engineNN.tar.xz, .dev/toolkit/*.tar.xz
# (NVIDIA's toolkit builds: nvidia-ctk, nvidia-container-runtime, nvidia-cdi-hook, nvidia-container-runtime-hook;
# and libnvidia-container's nvidia-container-cli for legacy mode) and .whl/. Nothing here is a stand-in: the
# runtime, the hook, the spec generator and nvidia-container-cli are NVIDIA's, built from NVIDIA's source
# (../shared/toolkit/README.md of the checkout says how; libnvidia-container is the 1.19.0 tree with the two
# binary-touching changes since 1.18.0 reverted, not checked byte for byte against 889a3bb).
#
# It
# - installs the toolkit's binaries where its packages put them (/usr/bin, libnvidia-container's libraries in the
#   multiarch directory, then ldconfig), one toolkit version after another;
# - registers the driver's library directory with ldconfig where the machine's driver is not in the ld cache (this
#   machine's driver lives under /usr/local/nvidia; a packaged driver is in the cache: legacy mode and the spec
#   generator find libraries through it);
# - starts the Engine by hand on /var/run/docker.sock, its --config-file the daemon.json of an Amazon Linux 2023
#   tree (gpuprep install refuses Ubuntu, so install acts on that tree with the live Engine named by DOCKER_HOST);
# - for each toolkit: `nvidia-ctk cdi generate` (the real spec), gpuprep install (dry run, run, second run) with the
#   real runtime, gpuprep doctor live, then the matrix: each runtime mode (legacy, cdi, jit-cdi, auto) crossed with
#   each route a container takes (the default runtime with NVIDIA_VISIBLE_DEVICES as the ECS agent sets it,
#   `--runtime nvidia`, Docker's CDI `--device nvidia.com/gpu=all`, `--gpus all`), each container running
#   nvidia-smi -L and the CUDA proof (gpuprep/gpu/cuda_proof.py: a PTX kernel through libcuda);
# - the CUDA proof on the host; the negatives with the real runtime; timings.
# Everything lands in /tmp/gpuprep-evidence, packed into $OUT/evidence.tar.xz with run.log, summary.json and
# matrix.md beside it; tests/fixtures/real-gpu/<date>/ keeps what the unit tests read.
set -u -o pipefail

OUT=${OUT:?set OUT to the directory results go to}
MODE=${1:-full}
ENGINE=${2:-}
RUNS=${RUNS:-7}
TOOLKITS=${TOOLKITS:-"1.18.0 1.20.0"}
cd "$(dirname "$0")/../.." || exit 1
REPO=$PWD
if [ -z "$ENGINE" ]; then
  for n in 26 28; do [ -f ".dev/engine$n.tar.xz" ] && { ENGINE=$n; break; }; done
fi
E=/tmp/gpuprep-evidence
ENG=/opt/gpuprep-engine$ENGINE
TKROOT=/opt/gpuprep-toolkit
SITE=/tmp/gpuprep-site
RT=/usr/bin/nvidia-container-runtime
IMG=cuda-proof:latest
SPEC=/etc/cdi/nvidia.json
PROOF=/opt/gpuprep-proof/cuda_proof.py
LIBDIR=/usr/lib/x86_64-linux-gnu
GPU_INFO=/var/lib/ecs/gpu/nvidia-gpu-info.json
TREE=/tmp/gpuprep-al2023
DJ=$TREE/etc/docker/daemon.json
LIVE=unix:///var/run/docker.sock
RTLOG=/var/log/nvidia-container-runtime.log
export EVIDENCE=$E/evidence.jsonl
rm -rf "$E" && mkdir -p "$E"

rec() { python3 "$REPO/tests/gpu/rec.py" "$@"; }
gp() { rec "$1" -- python3 -m gpuprep "${@:2}"; }
install_() { rec "$1" --env DOCKER_HOST=$LIVE -- python3 -m gpuprep --root "$TREE" "${@:2}"; }

engine_up() {  # bounded: 60 s
  for _ in $(seq 300); do docker version >/dev/null 2>&1 && return 0; sleep 0.2; done
  echo "the Engine did not answer within 60 s"; tail -30 "$E/dockerd.log"; return 1
}
start_engine() {
  local t0; t0=$(date +%s%N)
  setsid dockerd --config-file "$DJ" -H $LIVE --pidfile /var/run/docker.pid >>"$E/dockerd.log" 2>&1 </dev/null &
  engine_up || return 1
  echo "dockerd (pid $(cat /var/run/docker.pid)) answered after $(( ($(date +%s%N) - t0) / 1000000 )) ms"
}
stop_engine() {
  local pid; pid=$(cat /var/run/docker.pid 2>/dev/null) || return 0
  kill "$pid" 2>/dev/null || return 0
  for _ in $(seq 150); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.2; done
  kill -9 "$pid" 2>/dev/null
}
daemon_json() { cp "$DJ" "$E/daemon.$1.json" 2>/dev/null; }

# -- the toolkit, installed where its packages put it -----------------------------------------------------------
toolkit_use() {  # $1: version
  local v=$1 d=$TKROOT/$1
  install -m 0755 "$d/bin/nvidia-ctk" "$d/bin/nvidia-container-runtime" "$d/bin/nvidia-cdi-hook" \
    "$d/bin/nvidia-container-runtime-hook" /usr/bin/ || return 1
  rm -f /etc/nvidia-container-runtime/config.toml
  mkdir -p /etc/nvidia-container-runtime
  # The package's config: `nvidia-ctk config default` (what the RPM's %post writes), plus a debug log whose
  # "Using ... mode" lines say which mode each container ran in.
  nvidia-ctk config default --output /etc/nvidia-container-runtime/config.toml || return 1
  nvidia-ctk config --in-place --set nvidia-container-runtime.debug=$RTLOG \
    --set nvidia-container-runtime.log-level=debug 2>&1 | tail -3
  nvidia-ctk --version | tee "$E/nvidia-ctk-version.$v.txt"
}
mode_set() {  # $1: legacy | cdi | jit-cdi | auto
  nvidia-ctk config --in-place --set "nvidia-container-runtime.mode=$1" 2>&1 | tail -3
  grep -E '^\s*mode\s*=' /etc/nvidia-container-runtime/config.toml | head -1
}

setup() {
  echo "### host"
  {
    echo "# date -u"; date -u
    echo "# uname -a"; uname -a
    echo "# /etc/os-release"; cat /etc/os-release
    echo "# /proc/driver/nvidia/version"; cat /proc/driver/nvidia/version
    echo "# python3"; command -v python3; python3 --version
    echo "# nproc"; nproc
    echo "# nvidia-smi -L"; nvidia-smi -L
    echo "# nvidia-smi --query-gpu"
    nvidia-smi --query-gpu=index,name,uuid,pci.bus_id,driver_version,persistence_mode,ecc.errors.uncorrected.volatile.total --format=csv
    echo "# ls -l /dev/nvidia*"; ls -l /dev/nvidia*
    echo "# engine"; tar -xJOf ".dev/engine$ENGINE.tar.xz" VERSIONS
    echo "# toolkit builds"; ls .dev/toolkit
  } > "$E/host.txt" 2>&1
  cat "$E/host.txt"

  echo "### gpuprep from wheels (.whl/) into $SITE"
  rm -rf "$SITE"
  python3 -m pip install -q --no-index --no-deps --no-cache-dir --target "$SITE" .whl/*.whl || return 1
  export PYTHONPATH=$SITE
  python3 -c 'import gpuprep, docker, yaml, typer, pynvml, psutil, importlib.metadata as m
print("gpuprep", gpuprep.__file__); print({n: m.version(n) for n in ("docker", "PyYAML", "typer", "nvidia-ml-py", "psutil")})' \
    || return 1
  mkdir -p "$(dirname "$PROOF")"
  cp "$SITE/gpuprep/gpu/cuda_proof.py" "$PROOF" 2>/dev/null || cp "$REPO/gpuprep/gpu/cuda_proof.py" "$PROOF" || return 1

  echo "### the driver's libraries in the ld cache (a packaged driver is there; this machine's is under /usr/local/nvidia)"
  if ! ldconfig -p | grep -q 'libnvidia-ml.so.1 '; then
    local dir; dir=$(dirname "$(find / -xdev -name 'libnvidia-ml.so.1' -not -path '/proc/*' 2>/dev/null | head -1)")
    echo "$dir" > /etc/ld.so.conf.d/000-gpuprep-nvidia-driver.conf && ldconfig
    echo "registered $dir with ldconfig"
  fi
  ldconfig -p | grep -E 'libnvidia-ml.so.1 |libcuda.so.1 ' | tee -a "$E/host.txt"

  echo "### NVIDIA's toolkit builds into $TKROOT"
  rm -rf "$TKROOT" && mkdir -p "$TKROOT"
  for f in .dev/toolkit/nvidia-container-toolkit-*.tar.xz; do
    local v; v=$(basename "$f" | sed -E 's/nvidia-container-toolkit-(.*)-linux-amd64.tar.xz/\1/')
    mkdir -p "$TKROOT/$v" && tar -xJf "$f" -C "$TKROOT/$v" || return 1
  done
  mkdir -p "$TKROOT/libnvidia-container" && tar -xJf .dev/toolkit/libnvidia-container-*.tar.xz -C "$TKROOT/libnvidia-container" || return 1
  # libnvidia-container's CLI and libraries where its packages put them (legacy mode's nvidia-container-cli).
  install -m 0755 "$TKROOT"/libnvidia-container/usr/bin/nvidia-container-cli /usr/bin/
  cp -a "$TKROOT"/libnvidia-container/usr/lib/x86_64-linux-gnu/libnvidia-container*.so* "$LIBDIR/" && ldconfig
  find "$TKROOT" -maxdepth 3 -type f | sort
  nvidia-container-cli --version | head -3

  echo "### Engine $ENGINE (.dev/engine$ENGINE.tar.xz) into $ENG"
  rm -rf "$ENG" && mkdir -p "$ENG" && tar -xJf ".dev/engine$ENGINE.tar.xz" -C "$ENG" || return 1
  export PATH=$ENG/bin:$PATH
  runc --version | head -1
  rm -rf "$TREE" && mkdir -p "$TREE/etc/docker" "$TREE/usr/bin"
  printf 'NAME="Amazon Linux"\nVERSION="2023"\nID="amzn"\nID_LIKE="fedora"\nVERSION_ID="2023"\nPLATFORM_ID="platform:al2023"\nPRETTY_NAME="Amazon Linux 2023"\n' \
    > "$TREE/etc/os-release"
  # gpu-check compares the container's GPUs with the host's nvidia-smi, found inside --root: the host's own binary.
  cp "$(readlink -f "$(command -v nvidia-smi)")" "$TREE/usr/bin/nvidia-smi"
  echo '{"bridge": "none", "iptables": false, "ip6tables": false, "userland-proxy": false}' > "$DJ"
  daemon_json start
  start_engine || return 1
  docker info --format '{{.ServerVersion}} {{.Driver}} cgroup v{{.CgroupVersion}} {{.DefaultRuntime}} CDI {{json .CDISpecDirs}}'

  echo "### the test image: busybox, python3 with ctypes (for the CUDA proof); no driver file: the runtime brings those"
  local R=/tmp/gpuprep-rootfs py; py=$(readlink -f "$(command -v python3)")
  rm -rf "$R" && mkdir -p "$R/bin" "$R/tmp" "$R/usr/bin" "$R/usr/lib" "$R/etc"
  cp "$ENG/bin/busybox" "$R/bin/" && for c in sh ls cat echo grep env; do ln -sf busybox "$R/bin/$c"; done
  cp "$py" "$R/usr/bin/python3"
  local pylib; pylib=$(python3 -c 'import sys; print(f"/usr/lib/python{sys.version_info[0]}.{sys.version_info[1]}")')
  mkdir -p "$R$pylib" && (cd "$pylib" && tar -c --exclude=__pycache__ --exclude=test --exclude=tkinter --exclude=idlelib \
    --exclude=ensurepip --exclude=site-packages --exclude=dist-packages . | tar -x -C "$R$pylib")
  for l in $( (ldd "$py"; for so in "$pylib"/lib-dynload/_ctypes*.so "$pylib"/lib-dynload/*.so; do ldd "$so"; done) 2>/dev/null \
              | grep -o '/[^ ]*' | sort -u); do
    mkdir -p "$R$(dirname "$l")"; cp -L "$l" "$R$l"
  done
  # glibc whole, as any distribution image has it: the driver's libraries (libcuda, nvidia-smi) need libdl,
  # libpthread and librt, which python3 alone does not pull in.
  local g; for g in /lib/x86_64-linux-gnu/lib{c,dl,pthread,rt,m,resolv,gcc_s,stdc++,z}.so* /lib64/ld-linux-x86-64.so.2; do
    [ -e "$g" ] && { mkdir -p "$R$(dirname "$g")"; cp -L "$g" "$R$g"; }
  done
  echo 'root:x:0:0:root:/root:/bin/sh' > "$R/etc/passwd"
  # As every distribution's: the runtime's update-ldcache hook writes its folders to /etc/ld.so.conf.d and runs
  # ldconfig on the container's root; without the include libcuda.so.1 is mounted but not found.
  echo 'include /etc/ld.so.conf.d/*.conf' > "$R/etc/ld.so.conf"; mkdir -p "$R/etc/ld.so.conf.d"
  # As NVIDIA's CUDA images do (nvidia/cuda's Dockerfiles: ENV PATH and LD_LIBRARY_PATH with /usr/local/nvidia): a
  # driver installed under /usr/local/nvidia, as on this machine, is mounted there by the spec and the runtime.
  tar -C "$R" -c . | docker import --change 'ENV PATH=/usr/local/nvidia/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV LD_LIBRARY_PATH=/usr/local/nvidia/lib:/usr/local/nvidia/lib64' - "$IMG" >/dev/null || return 1
  docker run --rm --runtime runc "$IMG" python3 -c 'import ctypes, json; print("python3 with ctypes in the image")' || return 1

  # From here gpuprep runs as installed from its wheel, not from the checkout.
  mkdir -p /tmp/gpuprep-cwd && cd /tmp/gpuprep-cwd || return 1
  python3 -c 'import gpuprep; print("gpuprep runs from", gpuprep.__file__)'
}

host_cuda() {
  echo "### the CUDA proof on the host (libcuda through ctypes: context, copy in, PTX kernel, copy out)"
  rec host-cuda-proof -- python3 "$PROOF"
}

# -- one toolkit: its spec, gpuprep install and doctor, the mode x route matrix ----------------------------------
CONTAINER_SH='nvidia-smi -L; echo "--- cuda"; python3 /proof/cuda_proof.py'
run_route() {  # $1: record name, $2: route
  local args
  case $2 in
    ecs)     args=(-e NVIDIA_VISIBLE_DEVICES=all) ;;                       # the default runtime, as the ECS agent runs tasks
    runtime) args=(--runtime nvidia -e NVIDIA_VISIBLE_DEVICES=all) ;;
    cdi)     args=(--runtime runc --device nvidia.com/gpu=all) ;;           # Docker's CDI: the Engine reads the spec
    gpus)    args=(--runtime runc --gpus all) ;;                            # Docker's --gpus: the prestart hook
  esac
  : > "$RTLOG"
  rec "$1" -- docker run --rm -v "$(dirname "$PROOF")":/proof:ro "${args[@]}" "$IMG" sh -c "$CONTAINER_SH"
  # Which mode the runtime says it used (its debug log), kept beside the record.
  grep -hoE "Using (requested|low-level|OCI specification).*|resolved mode.*|mode \"?[a-z-]+\"?" "$RTLOG" 2>/dev/null \
    | sort -u | head -5 > "$E/rtlog.$1.txt"
  cat "$E/rtlog.$1.txt" | sed 's/^/   runtime log| /'
}

toolkit_round() {  # $1: version; $2: modes
  local v=$1 tag="tk$1"
  echo "################ toolkit $v on Engine $ENGINE"
  toolkit_use "$v" || return 1
  rec "spec-generate-$tag" -- nvidia-ctk cdi generate --format=json --output="$SPEC"
  cp "$SPEC" "$E/cdi-spec.$tag.json" 2>/dev/null
  rec "cdi-list-$tag" -- nvidia-ctk cdi list
  mode_set auto
  local only=(--only docker-runtime,docker-reload,gpu-check --image "$IMG" --runtime-path "$RT")
  [ "$ENGINE" -lt 28 ] && only+=(--docker-cdi)  # Engine 25 to 28.1: Docker's CDI is opt-in (moby/moby PR 49963)
  echo "dockerd pid before: $(cat /var/run/docker.pid)" | tee -a "$E/pids.txt"
  install_ "install-dry-run-$tag" install --dry-run "${only[@]}"
  install_ "install-json-$tag" --json install "${only[@]}"
  echo "dockerd pid after install ($tag): $(cat /var/run/docker.pid)" | tee -a "$E/pids.txt"
  install_ "install-again-json-$tag" --json install "${only[@]}"
  echo "dockerd pid after the second install ($tag): $(cat /var/run/docker.pid)" | tee -a "$E/pids.txt"
  daemon_json "installed-$tag"
  gp "doctor-json-$tag" --json doctor --image "$IMG"
  gp "doctor-boot-json-$tag" --json doctor --boot --image "$IMG"
  for m in $2; do
    mode_set "$m"
    for route in ecs runtime cdi gpus; do
      run_route "matrix|$ENGINE|$v|$m|$route" "$route"
    done
  done
  mode_set auto
}

ecs_gpu_info() {
  echo "### nvidia-gpu-info.json as ecs-init writes it (NVML's driver version and UUIDs), then one UUID changed"
  mkdir -p -m 0700 "$(dirname "$GPU_INFO")"
  python3 - "$GPU_INFO" <<'EOF'
import json, os, sys, pynvml
pynvml.nvmlInit()
text = lambda v: v.decode() if isinstance(v, bytes) else v
ids = [text(pynvml.nvmlDeviceGetUUID(pynvml.nvmlDeviceGetHandleByIndex(i))) for i in range(pynvml.nvmlDeviceGetCount())]
doc = {"DriverVersion": text(pynvml.nvmlSystemGetDriverVersion()), "GPUIDs": ids}
fd = os.open(sys.argv[1], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o700)  # ecs-init: 0700
os.write(fd, json.dumps(doc).encode()); os.close(fd)
print(json.dumps(doc))
EOF
  cp "$GPU_INFO" "$E/nvidia-gpu-info.host.json"
  gp ecs-gpu-info-host --json doctor --no-container
  rm -f "$GPU_INFO"
}

negatives() {  # with the last toolkit in place, mode auto
  echo "### negative: a spec from another driver (its libraries' version suffix changed): Docker's CDI route"
  cp "$SPEC" "$E/spec.good.json"
  python3 - "$SPEC" <<'EOF'
import json, re, sys
p = sys.argv[1]; text = open(p).read()
ver = re.search(r"\s(\d+\.\d+(?:\.\d+)?)\s", open("/proc/driver/nvidia/version").read()).group(1)
open(p, "w").write(text.replace(ver, "999.99.99"))
print("spec now names driver 999.99.99 instead of", ver)
EOF
  cp "$SPEC" "$E/cdi-spec.stale-driver.json"
  run_route neg-stale-spec-cdi cdi
  run_route neg-stale-spec-ecs ecs
  gp neg-stale-spec-doctor --json doctor --image "$IMG"
  echo "### negative: a spec naming a missing device node"
  python3 - "$E/spec.good.json" "$SPEC" <<'EOF'
import json, sys
spec = json.load(open(sys.argv[1]))
for d in spec["devices"]:
    for n in d.get("containerEdits", {}).get("deviceNodes", []):
        if n["path"].startswith("/dev/nvidia") and n["path"][11:].isdigit():
            n["path"] = "/dev/nvidia99"
json.dump(spec, open(sys.argv[2], "w"), indent=1)
EOF
  cp "$SPEC" "$E/cdi-spec.missing-node.json"
  run_route neg-missing-node-cdi cdi
  gp neg-missing-node-doctor --json doctor --image "$IMG"
  cp "$E/spec.good.json" "$SPEC"
  echo "### negative: mode cdi with no spec where the runtime looks (toolkit issue 1537: unresolvable CDI devices)"
  mode_set cdi; mv "$SPEC" "$E/spec.moved.json"
  run_route neg-cdi-mode-no-spec-ecs ecs
  mv "$E/spec.moved.json" "$SPEC"; mode_set auto
  echo "### negative: the default runtime runc (a restart: SIGHUP cannot unset default-runtime)"
  python3 - "$DJ" <<'EOF'
import json, sys
p = sys.argv[1]; d = json.load(open(p)); d.pop("default-runtime", None); json.dump(d, open(p, "w"), indent=2)
EOF
  daemon_json runc-default
  stop_engine; start_engine
  run_route neg-runc-default-ecs ecs
  gp neg-runc-default-doctor --json doctor --image "$IMG"
  gp neg-runc-default-doctor-text doctor --image "$IMG"
  echo "### the fix doctor names, run as it says"
  install_ neg-runc-default-fix --json install --only docker-runtime,docker-reload --runtime-path "$RT"
  gp neg-runc-default-fixed-doctor --json doctor --image "$IMG"
}

timings() {
  echo "### timings: $RUNS runs each, interleaved, medians; baseline python3 -c 'import typer'"
  local base="" base_live=""
  if [ -d "$REPO/.dev/baseline/gpuprep" ]; then
    base="doctor_no_container_baseline=PYTHONPATH=$REPO/.dev/baseline:$SITE python3 -m gpuprep --json doctor --no-container"
    base_live="doctor_live_baseline=PYTHONPATH=$REPO/.dev/baseline:$SITE python3 -m gpuprep --json doctor --image $IMG"
  fi
  python3 "$REPO/tests/gpu/timings.py" "$E/timings.json" "$RUNS" \
    "import_typer=python3 -c 'import typer'" \
    "doctor_no_container=python3 -m gpuprep --json doctor --no-container" \
    ${base:+"$base"} \
    "doctor_live=python3 -m gpuprep --json doctor --image $IMG" \
    ${base_live:+"$base_live"} \
    "cuda_proof_host=python3 $PROOF" \
    "cuda_proof_host_isolated=python3 -I -S $PROOF" \
    "python_bare=python3 -I -S -c pass" \
    "nvidia_smi_q=nvidia-smi -q" \
    "container_ecs_route=docker run --rm -e NVIDIA_VISIBLE_DEVICES=all $IMG nvidia-smi -L" \
    "container_cdi_all=docker run --rm --runtime runc --device nvidia.com/gpu=all $IMG nvidia-smi -L" \
    "container_ecs_cuda=docker run --rm -v $(dirname "$PROOF"):/proof:ro -e NVIDIA_VISIBLE_DEVICES=all $IMG python3 /proof/cuda_proof.py"
  python3 -X importtime -m gpuprep --json doctor --no-container 2> "$E/importtime.txt" >/dev/null
  sort -t'|' -k2 -n "$E/importtime.txt" | tail -12
}

finish() {
  stop_engine
  cp "$RTLOG" "$E/nvidia-container-runtime.log" 2>/dev/null
  python3 "$REPO/tests/gpu/matrix.py" "$E" > "$E/matrix.md" 2>&1; cp "$E/matrix.md" "$OUT/" 2>/dev/null
  ls -la "$E"
  tar -C "$(dirname "$E")" -cJf "$OUT/evidence.tar.xz" "$(basename "$E")"
  cp "$E/run.log" "$OUT/run.log" 2>/dev/null
  python3 "$REPO/tests/gpu/summarize.py" "$E" > "$OUT/summary.txt" 2>&1
  cp "$E/summary.json" "$OUT/" 2>/dev/null
  cat "$OUT/matrix.md" 2>/dev/null
}

main() {
  [ -n "$ENGINE" ] && [ -f ".dev/engine$ENGINE.tar.xz" ] || { echo "no .dev/engine$ENGINE.tar.xz: run tests/gpu/prepare.sh"; return 1; }
  setup || { echo "SETUP FAILED"; return 1; }
  host_cuda
  if [ "$MODE" = smoke ]; then
    toolkit_use 1.20.0 && mode_set auto && run_route smoke-ecs-runtime runtime
    return 0
  fi
  local v
  for v in $TOOLKITS; do
    toolkit_round "$v" "legacy cdi jit-cdi auto"
  done
  # 1.17.8: the last release before jit-cdi, the 2025 security floor; legacy and cdi are its modes.
  if [ -d "$TKROOT/1.17.8" ]; then toolkit_round 1.17.8 "legacy cdi"; toolkit_use "${TOOLKITS##* }"; fi
  ecs_gpu_info
  negatives
  timings
}

main > "$E/run.log" 2>&1
rc=$?
echo "real_gpu.sh $MODE engine $ENGINE: exit $rc"
finish
tail -c 2500 "$E/run.log"
exit $rc
