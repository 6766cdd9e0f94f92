"""A SIMULATED libnvidia-ml.so.1 (no GPU or NVIDIA driver here), built with gcc from a C stub.

A stand-in, nothing more: it answers the NVML calls gpuprep makes through nvidia-ml-py (gpu/query.py:
init, driver version, count, handle, name, UUID, PCI info v3, persistence, ECC, remapped rows, clock event
reasons, shutdown, error strings; and gpu/fabric.py's GPU fabric info, v2 and v1, and NVLink state) for the GPUs
it is built with, so the real nvidia-ml-py, loading a real shared library with ctypes, runs gpuprep's whole NVML
path. Signatures and struct layouts follow nvml.h as
nvidia-ml-py declares them (pynvml.py: nvmlPciInfo_t is busIdLegacy[16], five unsigned ints, busId[32]).
Built with -nostdlib: it needs gcc and binutils, no C library headers.

``fabric=`` gives it an NVSwitch fabric (``Fabric``: state, status, health mask, clique id, links per GPU and the
links down); without one the fabric and NVLink calls answer NotSupported, as on a GPU without NVLink.
"""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass, field
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

/* The fabric (nvml.h nvmlGpuFabricInfo_t, nvmlGpuFabricInfo_v2_t as nvidia-ml-py declares them). */
#define FABRIC_STATE @FSTATE@  /* -1: no fabric (NotSupported) */
#define N_LINKS @NLINKS@
static const int FABRIC_STATUS = @FSTATUS@;
static const uint FABRIC_HEALTH = @FHEALTH@, FABRIC_CLIQUE = @FCLIQUE@;
static const u64 LINKS_DOWN[] = {@DOWN@};  /* per GPU, a bit per link */
enum { NOT_SUPPORTED = 3, VERSION_MISMATCH = 25 };
struct fabric_v1 { unsigned char clusterUuid[16]; int status; uint cliqueId; uint state; };
struct fabric_v2 {
    uint version; unsigned char clusterUuid[16]; int status; uint cliqueId; uint state; uint healthMask;
};

static void fill(unsigned char *cluster, int *status, uint *clique, uint *state) {
    for (int i = 0; i < 16; i++) cluster[i] = (unsigned char)(0xa0 + i);
    *status = FABRIC_STATUS;
    *clique = FABRIC_CLIQUE;
    *state = (uint)FABRIC_STATE;
}

int nvmlDeviceGetGpuFabricInfoV(void *handle, struct fabric_v2 *info) {
    if (gpu(handle) < 0) return INVALID_ARGUMENT;
    if (FABRIC_STATE < 0) return NOT_SUPPORTED;
    if (info->version != 0x02000024) return VERSION_MISMATCH;  /* nvmlGpuFabricInfo_v2 */
    fill(info->clusterUuid, &info->status, &info->cliqueId, &info->state);
    info->healthMask = FABRIC_HEALTH;
    return SUCCESS;
}

int nvmlDeviceGetGpuFabricInfo(void *handle, struct fabric_v1 *info) {
    if (gpu(handle) < 0) return INVALID_ARGUMENT;
    if (FABRIC_STATE < 0) return NOT_SUPPORTED;
    fill(info->clusterUuid, &info->status, &info->cliqueId, &info->state);
    return SUCCESS;
}

int nvmlDeviceGetNvLinkState(void *handle, uint link, uint *active) {
    int i = gpu(handle);
    if (i < 0) return INVALID_ARGUMENT;
    if (N_LINKS == 0) return NOT_SUPPORTED;
    if (link >= N_LINKS) return INVALID_ARGUMENT;
    *active = (LINKS_DOWN[i] >> link) & 1 ? 0 : 1;
    return SUCCESS;
}
"""


@dataclass
class Fabric:
    """A stand-in NVSwitch fabric: nvml.h's state (1 not started, 2 in progress, 3 completed), the registration
    status (an nvmlReturn_t), the health mask, the clique id, NVLinks per GPU and {GPU index: [links down]}."""

    state: int = 3
    status: int = 0
    health_mask: int = 0
    clique_id: int = 1
    links: int = 18
    down: dict[int, list[int]] = field(default_factory=dict)


def c_string(text: str) -> str:
    return json.dumps(text)  # a JSON string of ASCII is a valid C string literal


def build(dest: Path, gpus=DEFAULT_GPUS, driver_version: str = DRIVER_VERSION, fabric: Fabric | None = None) -> Path:
    """Compile the stand-in into ``dest``/libnvidia-ml.so.1 (put ``dest`` on LD_LIBRARY_PATH); returns its path."""
    dest.mkdir(parents=True, exist_ok=True)
    source = (C_SOURCE.replace("@N@", str(len(gpus)))
              .replace("@NAMES@", ", ".join(c_string(g["name"]) for g in gpus))
              .replace("@UUIDS@", ", ".join(c_string(g["uuid"]) for g in gpus))
              .replace("@BUS_IDS@", ", ".join(c_string(g["pci"]) for g in gpus))
              .replace("@DRIVER@", c_string(driver_version))
              .replace("@FSTATE@", str(fabric.state if fabric else -1))
              .replace("@NLINKS@", str(fabric.links if fabric else 0))
              .replace("@FSTATUS@", str(fabric.status if fabric else 0))
              .replace("@FHEALTH@", f"{fabric.health_mask if fabric else 0}u")
              .replace("@FCLIQUE@", f"{fabric.clique_id if fabric else 0}u")
              .replace("@DOWN@", ", ".join(f"{sum(1 << b for b in (fabric.down if fabric else {}).get(i, []))}ull"
                                           for i in range(len(gpus)))))
    c_file = dest / "fake_nvml.c"
    c_file.write_text(source)
    lib = dest / "libnvidia-ml.so.1"
    subprocess.run(["gcc", "-shared", "-fPIC", "-nostdlib", "-O1", "-Wall", "-Werror", "-Wl,-soname,libnvidia-ml.so.1",
                    "-o", str(lib), str(c_file)], check=True, capture_output=True, text=True, timeout=60)
    return lib
