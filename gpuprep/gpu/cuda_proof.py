"""Prove CUDA works on each GPU through the driver API (``libcuda.so.1``), with no CUDA toolkit and no compiler.

For every device: retain its primary context, allocate, copy a value in, launch a one-thread kernel given as PTX
(the driver JIT-compiles it for whatever GPU this is), synchronize, copy the result out and check it. The devices
are proven in parallel, one thread each (ctypes releases the GIL around each driver call).

This module imports nothing outside the standard library, so the same file runs as a program inside a container
(``python3 cuda_proof.py``, or ``python3 -c "$(cat cuda_proof.py)"``) as on the host (``python3 -m
gpuprep.gpu.cuda_proof``). It prints one JSON object on stdout and exits 0 when every device passed, 1 when one
failed, 2 when CUDA could not start at all. A driver call that hangs cannot be interrupted from Python: the work
runs in daemon threads bounded by a deadline (``GPUPREP_CUDA_DEADLINE_S``, default 60 s), past which the report
names the call each unfinished device was in (``error: "TIMEOUT"``) and the process ends with ``os._exit``; the
caller still bounds the whole program with a timeout of its own (a child process), so a hang is a finding and
never a hung gpuprep.

Error codes are CUDA's ``CUresult`` (cuda.h); ``cuGetErrorName`` gives their names where the driver loads.
``GPUPREP_LIBCUDA`` (or the first argument) names the library to load instead of ``libcuda.so.1``.
"""

from __future__ import annotations

import ctypes
import json
import os
import sys
import threading
import time
from typing import Any

# A kernel that reads the word at `p_out`, multiplies it by 3, adds `p_seed` and writes it back: the result proves
# that the copy in, the launch and the copy out all happened on the device. PTX ISA 6.0 for sm_50: every driver
# since CUDA 9 JIT-compiles it for the GPU it runs on (Hopper and Blackwell included).
PTX = b"""
.version 6.0
.target sm_50
.address_size 64

.visible .entry gpuprep_probe(.param .u64 p_out, .param .u32 p_seed)
{
    .reg .u32 %r<4>;
    .reg .u64 %rd<3>;
    ld.param.u64 %rd1, [p_out];
    ld.param.u32 %r1, [p_seed];
    cvta.to.global.u64 %rd2, %rd1;
    ld.global.u32 %r2, [%rd2];
    mul.lo.u32 %r3, %r2, 3;
    add.u32 %r3, %r3, %r1;
    st.global.u32 [%rd2], %r3;
    ret;
}
\x00"""
KERNEL = b"gpuprep_probe"
INPUT = 0x1234567
DEFAULT_DEADLINE_S = 60.0


def seed_of(ordinal: int) -> int:
    return 1000 + ordinal


def expected_of(ordinal: int) -> int:
    """What device ``ordinal``'s kernel leaves in memory: INPUT * 3 + its seed, as a 32-bit word."""
    return (INPUT * 3 + seed_of(ordinal)) & 0xFFFFFFFF


# CUresult names for when cuGetErrorName itself is unavailable (cuda.h).
KNOWN_NAMES = {
    0: "CUDA_SUCCESS", 1: "CUDA_ERROR_INVALID_VALUE", 2: "CUDA_ERROR_OUT_OF_MEMORY",
    3: "CUDA_ERROR_NOT_INITIALIZED", 4: "CUDA_ERROR_DEINITIALIZED", 34: "CUDA_ERROR_STUB_LIBRARY",
    35: "CUDA_ERROR_INSUFFICIENT_DRIVER", 46: "CUDA_ERROR_DEVICES_UNAVAILABLE", 100: "CUDA_ERROR_NO_DEVICE",
    101: "CUDA_ERROR_INVALID_DEVICE", 200: "CUDA_ERROR_INVALID_IMAGE", 209: "CUDA_ERROR_NO_BINARY_FOR_GPU",
    218: "CUDA_ERROR_INVALID_PTX", 222: "CUDA_ERROR_UNSUPPORTED_PTX_VERSION", 304: "CUDA_ERROR_OPERATING_SYSTEM",
    700: "CUDA_ERROR_ILLEGAL_ADDRESS", 719: "CUDA_ERROR_LAUNCH_FAILED", 802: "CUDA_ERROR_SYSTEM_NOT_READY",
    803: "CUDA_ERROR_SYSTEM_DRIVER_MISMATCH", 804: "CUDA_ERROR_COMPAT_NOT_SUPPORTED_ON_DEVICE",
    999: "CUDA_ERROR_UNKNOWN",
}


class CudaFailure(Exception):
    def __init__(self, call: str, code: int, name: str) -> None:
        super().__init__(f"{call} returned {code} ({name})")
        self.call, self.code, self.name = call, code, name


class Driver:
    """The few driver-API entry points the proof needs, from ``libcuda.so.1`` (or another path)."""

    def __init__(self, path: str) -> None:
        self.lib = ctypes.CDLL(path)

    def fn(self, *names: str) -> ctypes._NamedFuncPointer:
        # The `_v2` entry points are the 64-bit ones since CUDA 3.2; cuda.h maps the plain names to them.
        for name in names:
            f: ctypes._NamedFuncPointer | None = getattr(self.lib, name, None)
            if f is not None:
                f.restype = ctypes.c_int
                return f
        raise CudaFailure(names[0], -1, f"symbol {names[0]} missing from libcuda")

    def name_of(self, code: int) -> str:
        s = ctypes.c_char_p()
        try:
            if self.fn("cuGetErrorName")(code, ctypes.byref(s)) == 0 and s.value:
                return s.value.decode("ascii", "replace")
        except CudaFailure:
            pass
        return KNOWN_NAMES.get(code, f"CUresult {code}")

    def call(self, where: dict[str, Any], label: str, names: tuple[str, ...], *args: object) -> None:
        """Call the first of ``names`` the library has; ``where["call"]`` says which call is in progress (what a
        timeout reports)."""
        where["call"] = label
        rc = self.fn(*names)(*args)
        if rc != 0:
            raise CudaFailure(label, rc, self.name_of(rc))


def prove_device(drv: Driver, ordinal: int, out: dict[str, Any]) -> None:
    """Prove device ``ordinal``, filling ``out`` as it goes (a timeout reports what is there)."""
    started = time.monotonic()
    seed = seed_of(ordinal)
    dev, ctx = ctypes.c_int(), ctypes.c_void_p()
    module, func, dptr = ctypes.c_void_p(), ctypes.c_void_p(), ctypes.c_uint64()
    retained = False
    try:
        drv.call(out, "cuDeviceGet", ("cuDeviceGet",), ctypes.byref(dev), ordinal)
        name = ctypes.create_string_buffer(256)
        drv.call(out, "cuDeviceGetName", ("cuDeviceGetName",), name, 256, dev)
        out["name"] = name.value.decode("utf-8", "replace")
        uuid = (ctypes.c_ubyte * 16)()
        try:
            drv.call(out, "cuDeviceGetUuid", ("cuDeviceGetUuid_v2", "cuDeviceGetUuid"), uuid, dev)
            h = bytes(uuid).hex()
            out["uuid"] = f"GPU-{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"
        except CudaFailure:
            pass  # the UUID only labels the device; its absence proves nothing either way
        drv.call(out, "cuDevicePrimaryCtxRetain", ("cuDevicePrimaryCtxRetain",), ctypes.byref(ctx), dev)
        retained = True
        drv.call(out, "cuCtxSetCurrent", ("cuCtxSetCurrent",), ctx)
        drv.call(out, "cuMemAlloc", ("cuMemAlloc_v2", "cuMemAlloc"), ctypes.byref(dptr), ctypes.c_size_t(4))
        value = ctypes.c_uint32(INPUT)
        drv.call(out, "cuMemcpyHtoD", ("cuMemcpyHtoD_v2", "cuMemcpyHtoD"), dptr, ctypes.byref(value),
                 ctypes.c_size_t(4))
        drv.call(out, "cuModuleLoadData", ("cuModuleLoadData",), ctypes.byref(module), PTX)
        drv.call(out, "cuModuleGetFunction", ("cuModuleGetFunction",), ctypes.byref(func), module, KERNEL)
        arg_ptr, arg_seed = ctypes.c_uint64(dptr.value), ctypes.c_uint32(seed)
        params = (ctypes.c_void_p * 2)(ctypes.cast(ctypes.byref(arg_ptr), ctypes.c_void_p),
                                       ctypes.cast(ctypes.byref(arg_seed), ctypes.c_void_p))
        drv.call(out, "cuLaunchKernel", ("cuLaunchKernel",), func, 1, 1, 1, 1, 1, 1, 0, None, params, None)
        drv.call(out, "cuCtxSynchronize", ("cuCtxSynchronize",))
        result = ctypes.c_uint32(0)
        drv.call(out, "cuMemcpyDtoH", ("cuMemcpyDtoH_v2", "cuMemcpyDtoH"), ctypes.byref(result), dptr,
                 ctypes.c_size_t(4))
        expected = expected_of(ordinal)
        out.update(result=result.value, expected=expected, ok=result.value == expected)
        if result.value == expected:
            out.pop("call", None)
        else:
            out.update(call="result", code=-1, error="WRONG_RESULT")
    except CudaFailure as e:
        out.update(ok=False, call=e.call, code=e.code, error=e.name)
    finally:
        # Best effort: a failed teardown must not hide the finding above.
        if module.value:
            drv.fn("cuModuleUnload")(module)
        if dptr.value:
            drv.fn("cuMemFree_v2", "cuMemFree")(dptr)
        if retained:
            drv.fn("cuDevicePrimaryCtxRelease_v2", "cuDevicePrimaryCtxRelease")(dev)
    out["ms"] = round((time.monotonic() - started) * 1000, 1)
    out["done"] = True


def _init(drv: Driver, report: dict[str, Any]) -> None:
    version, count = ctypes.c_int(), ctypes.c_int()
    drv.call(report, "cuInit", ("cuInit",), 0)
    drv.call(report, "cuDriverGetVersion", ("cuDriverGetVersion",), ctypes.byref(version))
    report["driver_api_version"] = version.value
    drv.call(report, "cuDeviceGetCount", ("cuDeviceGetCount",), ctypes.byref(count))
    report["count"] = count.value


def prove(path: str = "libcuda.so.1", deadline_s: float = DEFAULT_DEADLINE_S) -> tuple[int, dict[str, Any]]:
    """(exit code, report). Never waits past ``deadline_s`` in all: what has not finished by then is reported as
    a TIMEOUT in the call it was in."""
    started = time.monotonic()
    deadline = started + deadline_s
    report: dict[str, Any] = {"library": path, "devices": [], "deadline_s": deadline_s}
    try:
        drv = Driver(path)
    except OSError as e:
        report.update(ok=False, call="dlopen", code=-1, error="LIBCUDA_NOT_FOUND", detail=str(e)[:300])
        return 2, report

    init_error: list[CudaFailure] = []

    def init() -> None:
        try:
            _init(drv, report)
        except CudaFailure as e:
            init_error.append(e)

    worker = threading.Thread(target=init, name="cuInit", daemon=True)
    worker.start()
    worker.join(max(0.0, deadline - time.monotonic()))
    report["init_ms"] = round((time.monotonic() - started) * 1000, 1)
    if worker.is_alive():
        report.update(ok=False, code=-1, error="TIMEOUT")  # report["call"] is the call it hangs in
        return 2, report
    if init_error:
        failure = init_error[0]
        report.update(ok=False, call=failure.call, code=failure.code, error=failure.name)
        return 2, report
    report.pop("call", None)
    devices: list[dict[str, Any]] = [{"ordinal": i} for i in range(report["count"])]
    threads = [threading.Thread(target=prove_device, args=(drv, d["ordinal"], d), name=f"gpu{d['ordinal']}",
                                daemon=True) for d in devices]
    for t in threads:
        t.start()
    for t in threads:
        t.join(max(0.0, deadline - time.monotonic()))
    for d in devices:
        if not d.pop("done", False):
            # A snapshot: the hung thread may still write to ``d`` after this.
            d.update(ok=False, code=-1, error="TIMEOUT")
    report["devices"] = [dict(d) for d in devices]
    report["ok"] = bool(devices) and all(d.get("ok") for d in report["devices"])
    if not devices:
        report.update(call="cuDeviceGetCount", code=100, error="CUDA_ERROR_NO_DEVICE")
    report["ms"] = round((time.monotonic() - started) * 1000, 1)
    return (0 if report["ok"] else 1), report


def main(argv: list[str]) -> int:
    path = os.environ.get("GPUPREP_LIBCUDA") or (argv[0] if argv else "libcuda.so.1")
    try:
        deadline_s = float(os.environ.get("GPUPREP_CUDA_DEADLINE_S") or DEFAULT_DEADLINE_S)
    except ValueError:
        deadline_s = DEFAULT_DEADLINE_S
    rc, report = prove(path, deadline_s)
    sys.stdout.write(json.dumps(report, sort_keys=True) + "\n")
    sys.stdout.flush()
    return rc


if __name__ == "__main__":
    # os._exit: a thread stuck in the driver would otherwise hold the interpreter's shutdown.
    os._exit(main(sys.argv[1:]))
