"""A SIMULATED libnvidia-ml.so.1 (no GPU or NVIDIA driver here), built with gcc from a C stub.

A stand-in, nothing more: it answers the NVML calls gpuprep makes through nvidia-ml-py (gpu/query.py:
init, driver version, count, handle, name, UUID, PCI info v3, persistence, ECC, remapped rows, clock event
reasons, shutdown, error strings) for the GPUs it is built with, so the real nvidia-ml-py, loading a real
shared library with ctypes, runs gpuprep's whole NVML path. Signatures and struct layouts follow nvml.h as
nvidia-ml-py declares them (pynvml.py: nvmlPciInfo_t is busIdLegacy[16], five unsigned ints, busId[32]).
Built with -nostdlib: it needs gcc and binutils, no C library headers.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from testbed import DEFAULT_GPUS, DRIVER_VERSION

C_SOURCE = r"""/* SIMULATED libnvidia-ml.so.1 for gpuprep's tests (tests/fake_nvml.py): a stand-in, no GPU. */
typedef unsigned int uint;
typedef unsigned long long u64;
typedef unsigned long ulong;
#define N_GPUS @N@
static const char *const NAMES[] = {@NAMES@};
static const char *const UUIDS[] = {@UUIDS@};
static const char *const BUS_IDS[] = {@BUS_IDS@};
static const char DRIVER[] = @DRIVER@;
static int initialized;

enum { SUCCESS = 0, UNINITIALIZED = 1, INVALID_ARGUMENT = 2, INSUFFICIENT_SIZE = 7 };

static int copy(char *dst, const char *src, uint len) {
    uint i = 0;
    while (src[i]) i++;
    if (i + 1 > len) return INSUFFICIENT_SIZE;
    for (uint j = 0; j <= i; j++) dst[j] = src[j];
    return SUCCESS;
}

static int gpu(void *handle) {
    ulong i = (ulong)handle;
    return (initialized && i >= 1 && i <= N_GPUS) ? (int)(i - 1) : -1;
}

struct pci_info { char busIdLegacy[16]; uint domain, bus, device, pciDeviceId, pciSubSystemId; char busId[32]; };

int nvmlInitWithFlags(uint flags) { (void)flags; initialized = 1; return SUCCESS; }
int nvmlInit_v2(void) { return nvmlInitWithFlags(0); }
int nvmlShutdown(void) { if (!initialized) return UNINITIALIZED; initialized = 0; return SUCCESS; }

const char *nvmlErrorString(int result) {
    switch (result) {
    case SUCCESS: return "Success";
    case UNINITIALIZED: return "Uninitialized";
    case INVALID_ARGUMENT: return "Invalid Argument";
    case INSUFFICIENT_SIZE: return "Insufficient Size";
    default: return "Unknown Error";
    }
}

int nvmlSystemGetDriverVersion(char *version, uint length) {
    return initialized ? copy(version, DRIVER, length) : UNINITIALIZED;
}

int nvmlDeviceGetCount_v2(uint *count) {
    if (!initialized) return UNINITIALIZED;
    *count = N_GPUS;
    return SUCCESS;
}

int nvmlDeviceGetHandleByIndex_v2(uint index, void **handle) {
    if (!initialized) return UNINITIALIZED;
    if (index >= N_GPUS) return INVALID_ARGUMENT;
    *handle = (void *)(ulong)(index + 1);
    return SUCCESS;
}

int nvmlDeviceGetName(void *handle, char *name, uint length) {
    int i = gpu(handle);
    return i < 0 ? INVALID_ARGUMENT : copy(name, NAMES[i], length);
}

int nvmlDeviceGetUUID(void *handle, char *uuid, uint length) {
    int i = gpu(handle);
    return i < 0 ? INVALID_ARGUMENT : copy(uuid, UUIDS[i], length);
}

int nvmlDeviceGetPciInfo_v3(void *handle, struct pci_info *pci) {
    int i = gpu(handle);
    if (i < 0) return INVALID_ARGUMENT;
    copy(pci->busIdLegacy, BUS_IDS[i] + 4, sizeof pci->busIdLegacy);  /* the legacy field: 4-digit domain */
    copy(pci->busId, BUS_IDS[i], sizeof pci->busId);
    pci->domain = 0;
    pci->bus = 0;
    pci->device = 0;
    pci->pciDeviceId = 0x233010de;  /* H100 SXM5 80GB, vendor 0x10de */
    pci->pciSubSystemId = 0;
    return SUCCESS;
}

int nvmlDeviceGetPersistenceMode(void *handle, int *mode) {
    if (gpu(handle) < 0) return INVALID_ARGUMENT;
    *mode = 1;  /* NVML_FEATURE_ENABLED */
    return SUCCESS;
}

int nvmlDeviceGetTotalEccErrors(void *handle, int error_type, int counter_type, u64 *count) {
    (void)error_type; (void)counter_type;
    if (gpu(handle) < 0) return INVALID_ARGUMENT;
    *count = 0;
    return SUCCESS;
}

int nvmlDeviceGetRemappedRows(void *handle, uint *corr, uint *unc, uint *pending, uint *failure) {
    if (gpu(handle) < 0) return INVALID_ARGUMENT;
    *corr = *unc = *pending = *failure = 0;
    return SUCCESS;
}

int nvmlDeviceGetCurrentClocksEventReasons(void *handle, u64 *reasons) {
    if (gpu(handle) < 0) return INVALID_ARGUMENT;
    *reasons = 0x1;  /* GPU idle: no slowdown */
    return SUCCESS;
}
"""


def c_string(text: str) -> str:
    return json.dumps(text)  # a JSON string of ASCII is a valid C string literal


def build(dest: Path, gpus=DEFAULT_GPUS, driver_version: str = DRIVER_VERSION) -> Path:
    """Compile the stand-in into ``dest``/libnvidia-ml.so.1 (put ``dest`` on LD_LIBRARY_PATH); returns its path."""
    dest.mkdir(parents=True, exist_ok=True)
    source = (C_SOURCE.replace("@N@", str(len(gpus)))
              .replace("@NAMES@", ", ".join(c_string(g["name"]) for g in gpus))
              .replace("@UUIDS@", ", ".join(c_string(g["uuid"]) for g in gpus))
              .replace("@BUS_IDS@", ", ".join(c_string(g["pci"]) for g in gpus))
              .replace("@DRIVER@", c_string(driver_version)))
    c_file = dest / "fake_nvml.c"
    c_file.write_text(source)
    lib = dest / "libnvidia-ml.so.1"
    subprocess.run(["gcc", "-shared", "-fPIC", "-nostdlib", "-O1", "-Wall", "-Werror", "-Wl,-soname,libnvidia-ml.so.1",
                    "-o", str(lib), str(c_file)], check=True, capture_output=True, text=True, timeout=60)
    return lib
