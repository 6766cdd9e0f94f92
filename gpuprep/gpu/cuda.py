"""CUDA proven, not only NVML: ``gpu/cuda_proof.py`` run as a child process bounded by a timeout, its report read,
and every failure it can name mapped to a cause and the fix that clears it (doctor's ``gpu-cuda``; the container
check and install's gpu-check read the same table for the proof run inside a container).

Why a child: a driver call that hangs cannot be interrupted from Python, and CUDA state (a context on every GPU)
must not outlive the proof in doctor's process. nvidia-smi can be healthy while every CUDA program fails: on
NVSwitch hosts with nvidia-fabricmanager stopped or the fabric unfinished, cuInit returns 802
(CUDA_ERROR_SYSTEM_NOT_READY; docs/domain.md, "The fabric"; NVIDIA/gpu-operator 2781).
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gpuprep.errors import CommandError
from gpuprep.gpu.query import MOVE_HARDWARE, Cause, init_allowance_s
from gpuprep.host import Host, Started

PROOF_FILE = Path(__file__).with_name("cuda_proof.py")
JIT_ALLOWANCE_S = 10.0  # the PTX JIT and one launch per GPU, beyond the driver's init
EXIT_GRACE_S = 5.0  # the child's own deadline first, so its report names the call that hung

FABRIC_FIX = (
    "start the fabric and wait for it: `sudo systemctl enable --now nvidia-fabricmanager`, then `nvidia-smi -q | "
    "grep -A3 Fabric` until State is Completed (a minute or two after boot); if fabric manager fails, `journalctl "
    "-u nvidia-fabricmanager -b` says why (its version must be the driver's: `nv-fabricmanager --version`; on "
    "p6-b200/p6-b300/p6e-gb200 also `sudo modprobe -a ib_umad mlx5_ib` and the nvlsm package)")
DRIVER_FIX = ("the driver is in a bad state: `journalctl -k -b | grep -E 'NVRM|Xid'` says why; `sudo reboot`, and if "
              "it recurs " + MOVE_HARDWARE)

# By CUDA's own error name (cuda.h CUresult), as cuda_proof.py reports it.
CUDA_CAUSES: dict[str, Cause] = {
    "CUDA_ERROR_SYSTEM_NOT_READY": Cause(
        "the system is not ready for CUDA: nvidia-fabricmanager is not running or the NVSwitch fabric is not "
        "trained yet (nvidia-smi still looks healthy)", FABRIC_FIX),
    "CUDA_ERROR_NO_DEVICE": Cause(
        "CUDA sees no GPU",
        "the device nodes must exist and be visible: `ls -l /dev/nvidia*` (create them with `sudo nvidia-modprobe "
        "-u -c 0`, one `-c N` per GPU); an empty or wrong CUDA_VISIBLE_DEVICES hides them (`env | grep "
        "CUDA_VISIBLE`)"),
    "CUDA_ERROR_INSUFFICIENT_DRIVER": Cause(
        "libcuda.so.1 is newer than the loaded kernel driver (driver older than needed)",
        "the loaded module (`cat /proc/driver/nvidia/version`) must be the version libcuda belongs to (`ls -l "
        "$(ldconfig -p | awk '/libcuda.so.1 /{print $NF; exit}')`): `sudo reboot` to load the installed driver; "
        "a cuda-compat libcuda on the library path is the other cause: remove it from LD_LIBRARY_PATH"),
    "CUDA_ERROR_NOT_INITIALIZED": Cause("the driver failed to initialise CUDA", DRIVER_FIX),
    "CUDA_ERROR_UNKNOWN": Cause("the driver failed with an unknown error", DRIVER_FIX),
    "CUDA_ERROR_DEVICES_UNAVAILABLE": Cause(
        "a GPU is busy or unavailable: exclusive-process compute mode with another process holding it, or "
        "compute prohibited",
        "`nvidia-smi --query-gpu=index,compute_mode --format=csv` shows the mode and `nvidia-smi --query-compute-"
        "apps=pid,process_name --format=csv` who holds the GPU; `sudo nvidia-smi -c DEFAULT` returns every GPU to "
        "shared mode (unless exclusive mode is wanted: then stop the process holding it)"),
    "CUDA_ERROR_OPERATING_SYSTEM": Cause(
        "an OS call failed under CUDA: usually the device nodes' permissions",
        "`ls -l /dev/nvidia*` must show crw-rw-rw-: `sudo chmod 0666 /dev/nvidia*` (the driver makes them so "
        "unless NVreg_DeviceFileMode says otherwise: `grep -r NVreg_DeviceFile /etc/modprobe.d`); an SELinux "
        "denial is the other cause: `sudo ausearch -m avc -ts boot`"),
    "CUDA_ERROR_STUB_LIBRARY": Cause(
        "the CUDA toolkit's stub libcuda was loaded instead of the driver's",
        "remove the toolkit's `stubs` directory from LD_LIBRARY_PATH and /etc/ld.so.conf.d, then `sudo ldconfig`"),
    "CUDA_ERROR_SYSTEM_DRIVER_MISMATCH": Cause(
        "a cuda-compat libcuda does not fit the kernel driver",
        "remove the cuda-compat libraries from the library path (`ldconfig -p | grep libcuda` lists every "
        "libcuda), or install a driver of the same branch"),
    "CUDA_ERROR_INVALID_PTX": Cause(
        "the driver's PTX JIT compiler failed",
        "the driver's libnvidia-ptxjitcompiler.so.1 is missing or of another version: reinstall the driver's "
        "CUDA libraries (`ldconfig -p | grep ptxjit`); in a container NVIDIA_DRIVER_CAPABILITIES must include "
        "compute"),
    "LIBCUDA_NOT_FOUND": Cause(
        "libcuda.so.1 cannot be loaded (the driver's CUDA library is not installed or not on the library path)",
        "install the driver's CUDA library (libcuda.so.1 ships with the driver: NVIDIA's nvidia-driver-cuda-libs "
        "package), then `sudo ldconfig`; in a container NVIDIA_DRIVER_CAPABILITIES must include compute, which "
        "mounts it"),
    "TIMEOUT": Cause(
        "a CUDA call did not return: the driver is hung",
        "`journalctl -k -b | grep -E 'NVRM|Xid'` for the GPU's fault; enable persistence mode (`sudo systemctl "
        "enable --now nvidia-persistenced`); reboot, and if it recurs " + MOVE_HARDWARE),
    "WRONG_RESULT": Cause(
        "the kernel ran but returned a wrong value: the GPU computes wrongly",
        "drain the host: `nvidia-smi -q -d ECC,ROW_REMAPPER` for memory faults; " + MOVE_HARDWARE),
}
CUDA_CAUSES["CUDA_ERROR_UNSUPPORTED_PTX_VERSION"] = CUDA_CAUSES["CUDA_ERROR_INVALID_PTX"]
CUDA_CAUSES["CUDA_ERROR_NO_BINARY_FOR_GPU"] = CUDA_CAUSES["CUDA_ERROR_INVALID_PTX"]
# CUresult codes the issue names, for a driver whose cuGetErrorName is missing (cuda_proof.KNOWN_NAMES agrees).
CODES = {802: "CUDA_ERROR_SYSTEM_NOT_READY", 100: "CUDA_ERROR_NO_DEVICE", 35: "CUDA_ERROR_INSUFFICIENT_DRIVER",
         3: "CUDA_ERROR_NOT_INITIALIZED", 999: "CUDA_ERROR_UNKNOWN", 46: "CUDA_ERROR_DEVICES_UNAVAILABLE",
         304: "CUDA_ERROR_OPERATING_SYSTEM"}


def error_name(error: str, code: int | None = None) -> str:
    """CUDA's own name of an error: as reported, else by its CUresult code (a driver without cuGetErrorName)."""
    return error if error in CUDA_CAUSES else CODES.get(code or 0, error)


def cause_of(error: str, code: int | None = None) -> Cause:
    name = error_name(error, code)
    return CUDA_CAUSES.get(name) or Cause(
        f"CUDA failed with {error}" + (f" ({code})" if code not in (None, -1) else ""), DRIVER_FIX)


@dataclass
class CudaProof:
    """What the proof said: its report (cuda_proof.py's JSON), or why there is none."""

    report: dict[str, Any] = field(default_factory=dict)
    exit_code: int | None = None
    skipped: str = ""  # not run (--root)
    error: str = ""  # no report: the child hung past its own deadline, crashed or printed garbage
    duration_ms: float = 0.0
    waited: dict[str, Any] = field(default_factory=dict)  # what the boot gate waited for first (the fabric)

    @property
    def ok(self) -> bool:
        return not self.error and not self.skipped and self.exit_code == 0 and bool(self.report.get("ok"))

    def failures(self) -> list[dict[str, Any]]:
        """One line per failure: the init's, else each failing device's (``ordinal``, ``call``, ``error``...)."""
        if self.error:
            return [{"call": "python3", "code": self.exit_code, "error": "TIMEOUT" if "within" in self.error else
                     "PROOF_FAILED", "detail": self.error}]
        r = self.report
        if r.get("error") and not r.get("devices"):
            return [{k: r[k] for k in ("call", "code", "error", "detail") if k in r}]
        return [d for d in r.get("devices", []) if not d.get("ok")]

    def as_data(self) -> dict[str, Any]:
        data = {"exit_code": self.exit_code, "duration_ms": round(self.duration_ms, 1), **self.report}
        if self.error:
            data["error_detail"] = self.error
        if self.waited:
            data["waited"] = self.waited
        return data


def parse_report(stdout: str) -> dict[str, Any] | None:
    """The proof's JSON object (its last line of stdout), or None."""
    for line in reversed(stdout.strip().splitlines()):
        try:
            value = json.loads(line)
        except ValueError:
            continue
        return value if isinstance(value, dict) else None
    return None


def proof_timeouts(n_gpus: int) -> tuple[float, float]:
    """(the proof's own deadline, the child's timeout): a cold init of every GPU may take 1-3 s each
    (``init_allowance_s``), then the JIT and one launch per GPU."""
    inner = init_allowance_s(n_gpus) + JIT_ALLOWANCE_S
    return inner, inner + EXIT_GRACE_S


def _argv() -> list[str]:
    # -I: no user site, no PYTHON* variables; -S: no site at all, so no .pth file of the host's Python (a
    # numba-cuda redirector costs ~25 ms per start on NVIDIA's images: bench/RESULTS.md, 2026-12-07): the proof
    # imports nothing outside the standard library.
    return [sys.executable, "-I", "-S", str(PROOF_FILE)]


class PendingProof:
    """The proof's child, started; ``result()`` waits for it, bounded, and reads its report.

    Started as soon as doctor knows the running system has GPUs and a loaded driver (``start_early``), so the
    child's cuInit and PTX JIT run while doctor imports its checks and reads the host: the proof is most of a
    live doctor's wall time on a GPU host (bench/RESULTS.md).
    """

    def __init__(self, host: Host, n_gpus: int) -> None:
        inner, self.outer = proof_timeouts(n_gpus)
        self.n_gpus = n_gpus
        self.started = time.monotonic()
        self.proc: Started | None = None
        self.error = ""
        try:
            self.proc = host.start(_argv(), env={"GPUPREP_CUDA_DEADLINE_S": f"{inner:g}"})
        except OSError as exc:
            self.error = f"cannot run {sys.executable}: {exc.strerror or exc}"

    def result(self) -> CudaProof:
        if self.proc is None:
            return CudaProof(error=self.error)
        try:
            done = Host.collect(self.proc, max(0.0, self.started + self.outer - time.monotonic()))
        except CommandError:
            return CudaProof(error=f"the CUDA proof did not finish within {self.outer:g}s",
                             duration_ms=(time.monotonic() - self.started) * 1000)
        took = (time.monotonic() - self.started) * 1000
        report = parse_report(done.stdout)
        if report is None:
            said = (done.stderr or done.stdout).strip().splitlines()
            return CudaProof(exit_code=done.returncode, duration_ms=took,
                             error=f"the CUDA proof exited {done.returncode} without a report"
                             + (f": {said[-1][:300]}" if said else ""))
        return CudaProof(report, done.returncode, duration_ms=took)

    def discard(self) -> None:
        """Kill the child if it still runs (a doctor that ends before asking, or a proof past its bound), and forget
        it: a later Host that happens to get this one's id must not collect a killed child."""
        for key, pending in list(_early.items()):
            if pending is self:
                del _early[key]
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            Host.collect(self.proc, EXIT_GRACE_S)


_early: dict[int, PendingProof] = {}  # by id(host): the proof start_early began for that host's run


def start_early(host: Host) -> PendingProof | None:
    """Begin the proof now, for ``gpu-cuda`` to collect, where it will run: the running system, with NVIDIA GPUs
    and the nvidia module loaded (gpu-cuda's own conditions). The caller discards it when doctor ends."""
    from gpuprep.gpu.devices import read_pci

    if not host.live or host.read_text("/proc/driver/nvidia/version") is None:
        return None
    n_gpus = len(read_pci(host).gpus)
    return begin(host, n_gpus) if n_gpus else None


def begin(host: Host, n_gpus: int) -> PendingProof:
    """Start the proof for ``n_gpus`` GPUs; the next ``run_proof`` for this host collects it."""
    pending = _early[id(host)] = PendingProof(host, n_gpus)
    return pending


def run_proof(host: Host, n_gpus: int = 0) -> CudaProof:
    """Run cuda_proof.py on the running system with this interpreter, isolated, bounded (or collect the one
    ``start_early`` began for this host); ``GPUPREP_LIBCUDA`` in the host's environment names another libcuda."""
    if not host.live:
        return CudaProof(skipped="CUDA is proven on the running system only (acting on --root)")
    pending = _early.pop(id(host), None)
    if pending is None or pending.n_gpus != n_gpus:
        if pending is not None:
            pending.discard()
        pending = PendingProof(host, n_gpus)
    return pending.result()


def _first_failure(proof: CudaProof) -> dict[str, Any]:
    fails = proof.failures()
    return fails[0] if fails else {"error": "PROOF_FAILED"}


def describe(proof: CudaProof, where: str = "") -> tuple[str, str]:
    """(summary, hint) of a failed proof: the first failure's call and CUDA error name, its cause and fix; the
    other failing devices listed."""
    fails = proof.failures()
    first = _first_failure(proof)
    code = first.get("code")
    cause = cause_of(str(first.get("error")), code if isinstance(code, int) else None)
    named = f"{first.get('error')}" + (f" ({code})" if isinstance(code, int) and code >= 0 else "")
    call = first.get("call") or "?"
    if "ordinal" in first:
        devices = ", ".join(f"GPU {d['ordinal']}" for d in fails)
        total = len(proof.report.get("devices", []))
        head = f"CUDA failed on {devices} of {total}: {call} returned {named}"
    elif first.get("error") == "TIMEOUT":
        head = f"CUDA hung in {call}" if call != "python3" else (proof.error or "CUDA hung")
    else:
        head = f"CUDA cannot start: {call} returned {named}"
    return f"{where}{head}: {cause.summary}", cause.hint


def first_error(proof: CudaProof) -> str:
    """CUDA's name of the proof's first failure (gpu/cuda_fixes.py picks its fixes by it)."""
    first = _first_failure(proof)
    code = first.get("code")
    return error_name(str(first.get("error")), code if isinstance(code, int) else None)


def success_summary(proof: CudaProof) -> str:
    devices = proof.report.get("devices", [])
    slowest = max((d.get("ms", 0.0) for d in devices), default=0.0)
    return (f"CUDA works on {len(devices)} GPU" + ("" if len(devices) == 1 else "s")
            + f": a PTX kernel ran on each and returned the expected value (cuInit {proof.report.get('init_ms', 0):g}"
            f" ms, slowest GPU {slowest:g} ms, {proof.duration_ms:.0f} ms in all)")
