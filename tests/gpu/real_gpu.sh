#!/usr/bin/env bash
# gpuprep on a real GPU host, re-runnable (issues 14 and 18): the accelerator machine of docs/testbed.md 7 and 10
# (Ubuntu 24.04, the NVIDIA driver, python3 3.12, no Docker, no registry). tests/gpu/README.md says how to run it.
#
#   OUT=DIR bash tests/gpu/real_gpu.sh [smoke|full]
#
# Needs, in the repository root: .dev/engine26.tar.xz and .whl/ (tests/gpu/prepare.sh makes both here). It
# - starts Docker Engine 26.1.5 (Debian trixie's) by hand on /var/run/docker.sock, as the live system's Engine;
# - installs gpuprep and its dependencies from the wheels into a directory of its own (PYTHONPATH);
# - registers tests/gpu/nvidia-runtime-standin.py, a STAND-IN for nvidia-container-runtime in CDI mode (not
#   NVIDIA's runtime: see its docstring for what it hides), with a CDI spec written by tests/gpu/cdi_spec.py, a
#   STAND-IN for `nvidia-ctk cdi generate` (every /dev/nvidiaN by index and by UUID, and "all");
# - runs `gpuprep install --only docker-runtime,docker-reload,gpu-check` (dry run, run, second run) against the live
#   Engine through DOCKER_HOST on an Amazon Linux 2023 tree (--root) whose daemon.json the Engine reads (install
#   refuses Ubuntu; with no package step selected it needs no dnf here), `gpuprep doctor` live in text
#   and --json, the CDI route with --docker-cdi (Docker's own CDI, `--device nvidia.com/gpu=`),
#   each GPU alone by UUID and by index and all of them, nvidia-gpu-info.json as ecs-init writes it (and a copy
#   with one UUID changed), the negative cases (default runtime runc; a spec naming a missing device node; a spec
#   mounting a stale driver's library), and timings (7 runs each, medians, `python3 -c 'import typer'` as the
#   baseline, in the same run).
# smoke: only the start (wheels, Engine, image, one GPU container, one doctor) to check the machine before the
# full run. Everything lands in /tmp/gpuprep-evidence, packed into $OUT/evidence.tar.xz (with run.log and
# summary.json beside it); tests/fixtures/real-gpu/<date>/ keeps what the unit tests read.
set -u -o pipefail

OUT=${OUT:?set OUT to the directory results go to}
MODE=${1:-full}
RUNS=${RUNS:-7}
cd "$(dirname "$0")/../.." || exit 1
REPO=$PWD
E=/tmp/gpuprep-evidence
ENG=/opt/gpuprep-engine26
SITE=/tmp/gpuprep-site
RT=$ENG/bin/nvidia-container-runtime
IMG=tiny:latest
SPEC=/etc/cdi/nvidia.json
GPU_INFO=/var/lib/ecs/gpu/nvidia-gpu-info.json
# install refuses Ubuntu (preflight: an RPM platform), so install acts on an Amazon Linux 2023 tree with the live
# Engine named by DOCKER_HOST (gpuprep's --root contract): the Engine reads the tree's daemon.json (its
# --config-file), so what install writes there is what the live dockerd loads. doctor runs on the live host.
TREE=/tmp/gpuprep-al2023
DJ=$TREE/etc/docker/daemon.json
LIVE=unix:///var/run/docker.sock
export EVIDENCE=$E/evidence.jsonl
rm -rf "$E" && mkdir -p "$E"

rec() { python3 "$REPO/tests/gpu/rec.py" "$@"; }
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
daemon_json() {  # snapshot of daemon.json, named
  cp "$DJ" "$E/daemon.$1.json" 2>/dev/null
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
    echo "# engine"; tar -xJOf .dev/engine26.tar.xz VERSIONS
  } > "$E/host.txt" 2>&1
  cat "$E/host.txt"

  echo "### gpuprep from wheels (.whl/) into $SITE"
  rm -rf "$SITE"
  python3 -m pip install -q --no-index --no-deps --no-cache-dir --target "$SITE" .whl/*.whl || return 1
  export PYTHONPATH=$SITE
  python3 -c 'import gpuprep, docker, yaml, typer, pynvml, psutil, importlib.metadata as m
print("gpuprep", gpuprep.__file__); print({n: m.version(n) for n in ("docker", "PyYAML", "typer", "nvidia-ml-py", "psutil")})' \
    || return 1

  echo "### Engine 26 (.dev/engine26.tar.xz) into $ENG"
  rm -rf "$ENG" && mkdir -p "$ENG" && tar -xJf .dev/engine26.tar.xz -C "$ENG" || return 1
  export PATH=$ENG/bin:$PATH
  runc --version | head -1
  # The STAND-IN for nvidia-container-runtime (CDI mode), and a config.toml saying so, as the toolkit's would.
  install -m 0755 "$REPO/tests/gpu/nvidia-runtime-standin.py" "$RT"
  mkdir -p /etc/nvidia-container-runtime
  printf '# gpuprep tests/gpu: the nvidia runtime here is a STAND-IN that applies CDI specs (CDI mode)\n[nvidia-container-runtime]\nmode = "cdi"\n' \
    > /etc/nvidia-container-runtime/config.toml
  python3 "$REPO/tests/gpu/cdi_spec.py" "$SPEC" || return 1
  cp "$SPEC" "$E/cdi-spec.good.json"
  rm -rf "$TREE" && mkdir -p "$TREE/etc/docker" "$TREE/usr/bin"
  printf 'NAME="Amazon Linux"\nVERSION="2023"\nID="amzn"\nID_LIKE="fedora"\nVERSION_ID="2023"\nPLATFORM_ID="platform:al2023"\nPRETTY_NAME="Amazon Linux 2023"\n' \
    > "$TREE/etc/os-release"
  # gpu-check compares the container's GPUs with the host's nvidia-smi, found inside --root: the host's own binary.
  cp "$(readlink -f "$(command -v nvidia-smi)")" "$TREE/usr/bin/nvidia-smi"
  echo '{"bridge": "none", "iptables": false, "ip6tables": false, "userland-proxy": false}' > "$DJ"
  daemon_json start
  start_engine || return 1
  docker info --format '{{.ServerVersion}} {{.Driver}} cgroup v{{.CgroupVersion}} {{.DefaultRuntime}}'

  echo "### the test image: busybox and what nvidia-smi links against"
  local R=/tmp/gpuprep-rootfs smi; smi=$(readlink -f "$(command -v nvidia-smi)")
  rm -rf "$R" && mkdir -p "$R/bin" "$R/tmp" "$R/usr/bin" "$R/lib/x86_64-linux-gnu"
  cp "$ENG/bin/busybox" "$R/bin/" && for c in sh ls cat echo grep; do ln -sf busybox "$R/bin/$c"; done
  for l in $(ldd "$smi" | grep -o '/[^ ]*'); do mkdir -p "$R$(dirname "$l")"; cp -L "$l" "$R$l"; done
  tar -C "$R" -c . | docker import - "$IMG" >/dev/null || return 1

  # From here gpuprep runs as installed from its wheel: not from the checkout, which `python3 -m` would put first
  # on sys.path from the current directory (and which would shadow the baseline of the timings).
  mkdir -p /tmp/gpuprep-cwd && cd /tmp/gpuprep-cwd || return 1
  python3 -c 'import gpuprep; print("gpuprep runs from", gpuprep.__file__)'
}

install_live() {
  echo "### gpuprep install --only docker-runtime,docker-reload,gpu-check against the live Engine (DOCKER_HOST), its"
  echo "### daemon.json in an AL2023 tree (--root); the nvidia runtime: a STAND-IN"
  local only=(--only docker-runtime,docker-reload,gpu-check --image "$IMG" --runtime-path "$RT")
  echo "dockerd pid before: $(cat /var/run/docker.pid)" | tee "$E/pids.txt"
  rec install-on-ubuntu-refused -- python3 -m gpuprep --json install --dry-run "${only[@]}"
  install_ install-dry-run install --dry-run "${only[@]}"
  install_ install-json --json install "${only[@]}"
  echo "dockerd pid after install: $(cat /var/run/docker.pid)" | tee -a "$E/pids.txt"
  install_ install-again-json --json install "${only[@]}"
  echo "dockerd pid after the second install: $(cat /var/run/docker.pid)" | tee -a "$E/pids.txt"
  daemon_json installed
  rec plain-docker-run -- docker run --rm "$IMG" nvidia-smi -L  # no --runtime, no variable: runc passes through
  rec plain-docker-run-ecs -- docker run --rm -e NVIDIA_VISIBLE_DEVICES=all "$IMG" nvidia-smi -L
}

doctor_live() {
  echo "### gpuprep doctor live: text and --json, with the container check"
  rec doctor-json -- python3 -m gpuprep --json doctor --image "$IMG"
  rec doctor-text -- python3 -m gpuprep doctor --image "$IMG"
  rec doctor-boot-json -- python3 -m gpuprep --json doctor --boot --image "$IMG"
  rec nvidia-smi-q -- nvidia-smi -q
  nvidia-smi -q > "$E/nvidia-smi-q.txt" 2>&1
}

per_gpu() {  # $1: route label; the rest: how to ask for a GPU (a format with %s for the name)
  local route=$1 fmt=$2 uuid idx
  while IFS=, read -r idx uuid; do
    uuid=${uuid# }
    # shellcheck disable=SC2059
    rec "$route-uuid-$idx" -- docker run --rm $(printf -- "$fmt" "$uuid") "$IMG" \
      sh -c 'nvidia-smi --query-gpu=index,uuid --format=csv,noheader; ls /dev | grep "^nvidia"'
    # shellcheck disable=SC2059
    rec "$route-index-$idx" -- docker run --rm $(printf -- "$fmt" "$idx") "$IMG" \
      sh -c 'nvidia-smi --query-gpu=index,uuid --format=csv,noheader; ls /dev | grep "^nvidia"'
  done < <(nvidia-smi --query-gpu=index,uuid --format=csv,noheader)
  # shellcheck disable=SC2059
  rec "$route-all" -- docker run --rm $(printf -- "$fmt" all) "$IMG" \
    sh -c 'nvidia-smi --query-gpu=index,uuid --format=csv,noheader; ls /dev | grep "^nvidia"'
  # shellcheck disable=SC2059
  rec "$route-unknown-uuid" -- docker run --rm $(printf -- "$fmt" GPU-00000000-0000-0000-0000-000000000000) "$IMG" \
    nvidia-smi -L
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
  rec ecs-gpu-info-host -- python3 -m gpuprep --json doctor --no-container
  python3 - "$GPU_INFO" <<'EOF'
import json, sys
doc = json.load(open(sys.argv[1]))
u = doc["GPUIDs"][-1]
doc["GPUIDs"][-1] = u[:-4] + ("0000" if u[-4:] != "0000" else "ffff")  # one UUID changed: another machine's GPU
json.dump(doc, open(sys.argv[1], "w"))
print(json.dumps(doc))
EOF
  cp "$GPU_INFO" "$E/nvidia-gpu-info.changed.json"
  rec ecs-gpu-info-changed -- python3 -m gpuprep --json doctor --no-container
  rm -f "$GPU_INFO"
}

cdi_route() {
  echo "### the CDI route: gpuprep install --docker-cdi, then Docker's own CDI (--device nvidia.com/gpu=...)"
  install_ install-docker-cdi-json --json install --docker-cdi --only docker-runtime,docker-reload,gpu-check \
    --image "$IMG" --runtime-path "$RT"
  echo "dockerd pid after --docker-cdi: $(cat /var/run/docker.pid)" | tee -a "$E/pids.txt"
  daemon_json docker-cdi
  rec docker-info-cdi -- docker info --format '{{json .CDISpecDirs}} {{.ServerVersion}} {{.DefaultRuntime}}'
  rec doctor-cdi-json -- python3 -m gpuprep --json doctor --image "$IMG"
  # Docker's CDI alone: runc as the runtime, so no stand-in is involved; the Engine applies the spec.
  per_gpu cdi "--runtime runc --device nvidia.com/gpu=%s"
}

negatives() {
  echo "### negative: a spec naming a missing device node"
  python3 "$REPO/tests/gpu/cdi_spec.py" "$SPEC" --variant missing-node && cp "$SPEC" "$E/cdi-spec.missing-node.json"
  rec neg-missing-node-doctor -- python3 -m gpuprep --json doctor --image "$IMG"
  rec neg-missing-node-cdi-run -- docker run --rm --runtime runc --device nvidia.com/gpu=all "$IMG" nvidia-smi -L
  echo "### negative: a spec mounting a stale driver's library"
  python3 "$REPO/tests/gpu/cdi_spec.py" "$SPEC" --variant stale-driver && cp "$SPEC" "$E/cdi-spec.stale-driver.json"
  rec neg-stale-driver-doctor -- python3 -m gpuprep --json doctor --image "$IMG"
  rec neg-stale-driver-cdi-run -- docker run --rm --runtime runc --device nvidia.com/gpu=all "$IMG" nvidia-smi -L
  python3 "$REPO/tests/gpu/cdi_spec.py" "$SPEC"
  echo "### negative: the default runtime runc (a restart: SIGHUP cannot unset default-runtime)"
  python3 - "$DJ" <<'EOF'
import json, sys
p = sys.argv[1]; d = json.load(open(p)); d.pop("default-runtime", None); json.dump(d, open(p, "w"), indent=2)
EOF
  daemon_json runc-default
  stop_engine; start_engine
  rec neg-runc-default-doctor -- python3 -m gpuprep --json doctor --image "$IMG"
  rec neg-runc-default-doctor-text -- python3 -m gpuprep doctor --image "$IMG"
  echo "### the fix doctor names, run as it says"
  install_ neg-runc-default-fix --json install --only docker-runtime,docker-reload --runtime-path "$RT"
  rec neg-runc-default-fixed-doctor -- python3 -m gpuprep --json doctor --image "$IMG"
}

timings() {
  echo "### timings: $RUNS runs each, interleaved, medians; baseline python3 -c 'import typer'"
  local base=""
  if [ -d "$REPO/.dev/baseline/gpuprep" ]; then base="doctor_no_container_baseline=PYTHONPATH=$REPO/.dev/baseline:$SITE python3 -m gpuprep --json doctor --no-container"; fi
  python3 "$REPO/tests/gpu/timings.py" "$E/timings.json" "$RUNS" \
    "import_typer=python3 -c 'import typer'" \
    "doctor_no_container=python3 -m gpuprep --json doctor --no-container" \
    ${base:+"$base"} \
    "doctor_live=python3 -m gpuprep --json doctor --image $IMG" \
    "nvidia_smi_q=nvidia-smi -q" \
    "container_all_gpus=docker run --rm -e NVIDIA_VISIBLE_DEVICES=all $IMG nvidia-smi -L" \
    "container_cdi_all=docker run --rm --runtime runc --device nvidia.com/gpu=all $IMG nvidia-smi -L"
  python3 -X importtime -m gpuprep --json doctor --no-container 2> "$E/importtime.txt" >/dev/null
  sort -t'|' -k2 -n "$E/importtime.txt" | tail -12
  if [ -n "$base" ]; then
    PYTHONPATH=$REPO/.dev/baseline:$SITE python3 -X importtime -m gpuprep --json doctor --no-container \
      2> "$E/importtime.baseline.txt" >/dev/null
    grep -E "\| (docker|requests|urllib3|psutil|pynvml|yaml|http.client|typer)$" "$E/importtime.baseline.txt"
  fi
}

finish() {
  stop_engine
  ls -la "$E"
  tar -C "$(dirname "$E")" -cJf "$OUT/evidence.tar.xz" "$(basename "$E")"
  cp "$E/run.log" "$OUT/run.log" 2>/dev/null
  python3 "$REPO/tests/gpu/summarize.py" "$E" > "$OUT/summary.txt" 2>&1
  cp "$E/summary.json" "$OUT/" 2>/dev/null
  cat "$OUT/summary.txt"
}

main() {
  setup || { echo "SETUP FAILED"; return 1; }
  if [ "$MODE" = smoke ]; then
    rec smoke-container -- docker run --rm --network none "$IMG" /bin/echo the Engine runs containers
    rec smoke-doctor-json -- python3 -m gpuprep --json doctor --no-container
    return 0
  fi
  install_live
  doctor_live
  per_gpu standin "-e NVIDIA_VISIBLE_DEVICES=%s"
  ecs_gpu_info
  cdi_route
  negatives
  timings
}

main > "$E/run.log" 2>&1
rc=$?
echo "real_gpu.sh $MODE: exit $rc"
finish
tail -c 3000 "$E/run.log"
exit $rc
