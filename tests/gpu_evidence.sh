#!/usr/bin/env bash
# Evidence from a real GPU host (issue 2, "Real GPU"): run gpuprep's doctor and nvidia-smi -q there,
# time both, and leave everything under $OUT for tests/fixtures/real-gpu/.
#
# Meant for the accelerator machine (docs/testbed.md 7: one H100/H200, Ubuntu 24.04, driver 580, python3
# with nvidia-ml-py, no Docker). The caller sets PYTHONPATH so `python3 -m gpuprep` imports this
# checkout and its dependencies (wheels installed or unpacked beside it).
#
#   OUT=/some/dir PYTHONPATH=... bash tests/gpu_evidence.sh
#
# Writes: host.txt (what machine), doctor.json (first run's report), doctor.txt (text report),
# doctor.rc, doctor.stderr, gpuprep.prom, inventory.json (the raw GPU probe), nvidia-smi-q.txt,
# nvidia-smi-query-gpu.csv, timings.json (every run, medians). Copy doctor.json, nvidia-smi-q.txt and
# timings.json to tests/fixtures/real-gpu/ and tests/unit/gpu/test_real_gpu_fixture.py checks them.
set -u -o pipefail

OUT=${OUT:?set OUT to the directory the results go to}
RUNS=${RUNS:-5}
PY=${PYTHON:-python3}
mkdir -p "$OUT"
cd "$(dirname "$0")/.." || exit 1

ms_since() { echo $(( ($(date +%s%N) - $1) / 1000000 )); }

{
    echo "# uname -a"; uname -a
    echo "# /etc/os-release"; cat /etc/os-release
    echo "# /proc/driver/nvidia/version"; cat /proc/driver/nvidia/version
    echo "# python"; "$PY" --version
    "$PY" -c 'import importlib.metadata as m; print("nvidia-ml-py", m.version("nvidia-ml-py"))'
    echo "# nvidia-smi -L"; nvidia-smi -L
    echo "# id"; id
} > "$OUT/host.txt" 2>&1

doctor_ms=()
for i in $(seq 1 "$RUNS"); do
    t0=$(date +%s%N)
    "$PY" -m gpuprep --json doctor --no-container > "$OUT/doctor.$i.json" 2> "$OUT/doctor.$i.stderr"
    rc=$?
    doctor_ms+=("$(ms_since "$t0")")
    echo "$rc" > "$OUT/doctor.$i.rc"
done
cp "$OUT/doctor.1.json" "$OUT/doctor.json"
cp "$OUT/doctor.1.stderr" "$OUT/doctor.stderr"
cp "$OUT/doctor.1.rc" "$OUT/doctor.rc"

"$PY" -m gpuprep doctor --no-container --prom "$OUT/gpuprep.prom" > "$OUT/doctor.txt" 2>&1
echo "text report exit $?" >> "$OUT/doctor.txt"
"$PY" -m gpuprep --json doctor --no-container --boot > "$OUT/doctor-boot.json" 2> "$OUT/doctor-boot.stderr"
echo "$?" > "$OUT/doctor-boot.rc"

# The raw probe, field by field, as gpuprep.gpu.inventory.gather sees this host.
"$PY" - > "$OUT/inventory.json" 2> "$OUT/inventory.stderr" <<'EOF'
import dataclasses, json, time
from gpuprep.gpu.inventory import gather
from gpuprep.host import Host
t0 = time.monotonic()
inv = gather(Host("/"))
d = dataclasses.asdict(inv)
d["gather_ms"] = round((time.monotonic() - t0) * 1000, 1)
d["uuids"], d["count"], d["driver_version"] = inv.uuids, inv.count, inv.driver_version
print(json.dumps(d, indent=2, default=str))
EOF

smi_ms=()
for i in $(seq 1 "$RUNS"); do
    t0=$(date +%s%N)
    nvidia-smi -q > "$OUT/nvidia-smi-q.txt" 2>&1
    smi_ms+=("$(ms_since "$t0")")
done
nvidia-smi --query-gpu=index,name,uuid,pci.bus_id,driver_version,persistence_mode,ecc.errors.uncorrected.volatile.total \
    --format=csv > "$OUT/nvidia-smi-query-gpu.csv" 2>&1

"$PY" - "$OUT" "${doctor_ms[*]}" "${smi_ms[*]}" <<'EOF'
import json, statistics, sys
out, doctor, smi = sys.argv[1], [int(x) for x in sys.argv[2].split()], [int(x) for x in sys.argv[3].split()]
timings = {
    "doctor_no_container_ms": doctor, "doctor_median_ms": statistics.median(doctor),
    "nvidia_smi_q_ms": smi, "nvidia_smi_q_median_ms": statistics.median(smi),
    "note": "wall time of `python3 -m gpuprep --json doctor --no-container` and of `nvidia-smi -q`, same machine, same run",
}
json.dump(timings, open(f"{out}/timings.json", "w"), indent=2)
print(json.dumps(timings, indent=2))
EOF
echo "doctor exit $(cat "$OUT/doctor.rc"); results in $OUT"
