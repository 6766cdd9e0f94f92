"""A SIMULATED libcuda.so.1 (no GPU or NVIDIA driver here), built with gcc from a C stub: a stand-in, nothing more.

It answers the driver-API calls gpuprep's CUDA proof makes (gpuprep/gpu/cuda_proof.py: cuInit, cuDriverGetVersion,
cuDeviceGetCount, cuDeviceGet, cuDeviceGetName, cuDeviceGetUuid_v2, cuDevicePrimaryCtxRetain/Release_v2,
cuCtxSetCurrent, cuMemAlloc_v2, cuMemcpyHtoD_v2/DtoH_v2, cuModuleLoadData, cuModuleGetFunction, cuLaunchKernel,
cuCtxSynchronize, cuModuleUnload, cuMemFree_v2, cuGetErrorName) with the signatures of cuda.h, for N devices. Its
"device memory" is a table in the library; cuModuleLoadData accepts only PTX that defines the proof's kernel, and
cuLaunchKernel computes that kernel's arithmetic (``*out = *out * 3 + seed``) in C on the memory of the calling
thread's current context, so the proof's value check is a real one: a stand-in that copied wrongly or launched on
the wrong device would fail it.

On demand it fails the way a real driver does, set at build time (``fail=``, for a container, which does not see
the test's environment) or per run with ``GPUPREP_STANDIN_CUDA_FAIL``:

- ``802`` (any CUresult): cuInit returns it; ``802@cuDevicePrimaryCtxRetain`` that call returns it on every
  device, ``46@cuDevicePrimaryCtxRetain:3`` only on device 3;
- ``hang@CALL[:DEV]``: the call never returns (a hung driver);
- ``wrong@cuLaunchKernel[:DEV]``: the kernel computes a wrong value.

``GPUPREP_STANDIN_CUDA_DELAY_MS`` (or ``delay_ms=``) makes cuCtxSynchronize take that long on each device (what a
real kernel launch and JIT cost), and ``GPUPREP_STANDIN_CUDA_DEVICES`` overrides the device count.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from testbed import DEFAULT_GPUS

C_SOURCE = r"""/* SIMULATED libcuda.so.1 for gpuprep's tests (tests/fake_cuda.py): a stand-in, no GPU. */
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef unsigned long long u64;
#define MAX_DEV 64
#define WORDS 64
static const char *const NAMES[] = {@NAMES@};
static const char *const UUIDS[] = {@UUIDS@};
static const int N_BUILT = @N@;
static const char BUILT_FAIL[] = @FAIL@;
static const int BUILT_DELAY_MS = @DELAY@;
static unsigned int memory[MAX_DEV][WORDS];
static int next_word[MAX_DEV];
static int initialized;
static __thread int current = -1;  /* the device of this thread's current context */

enum { SUCCESS = 0, INVALID_VALUE = 1, NOT_INITIALIZED = 3, INVALID_IMAGE = 200, INVALID_CONTEXT = 201,
       NOT_FOUND = 500, INVALID_HANDLE = 400 };

static int n_devices(void) {
    const char *e = getenv("GPUPREP_STANDIN_CUDA_DEVICES");
    int n = e && *e ? atoi(e) : N_BUILT;
    return n > MAX_DEV ? MAX_DEV : n;
}

static const char *fail_spec(void) {
    const char *e = getenv("GPUPREP_STANDIN_CUDA_FAIL");
    return e ? e : BUILT_FAIL;
}

static void sleep_ms(long ms) {
    struct timespec t = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&t, &t) != 0) {}
}

/* The failure asked for at `call` on device `dev` (-1: no device), 0 for none, -2 for "wrong", -3 for "hang". */
static int injected(const char *call, int dev) {
    const char *spec = fail_spec();
    if (!*spec) return 0;
    const char *at = strchr(spec, '@');
    const char *where = at ? at + 1 : "cuInit";
    size_t len = strcspn(where, ":");
    if (strlen(call) != len || strncmp(where, call, len) != 0) return 0;
    if (where[len] == ':' && atoi(where + len + 1) != dev) return 0;
    if (!strncmp(spec, "hang", 4)) { for (;;) sleep_ms(1000); }
    if (!strncmp(spec, "wrong", 5)) return -2;
    return atoi(spec);
}
#define INJECT(call, dev) do { int f_ = injected(call, dev); if (f_ > 0) return f_; } while (0)

int cuInit(unsigned int flags) { (void)flags; INJECT("cuInit", -1); initialized = 1; return SUCCESS; }

int cuDriverGetVersion(int *v) { *v = 12080; return SUCCESS; }  /* CUDA 12.8, as the R570+ drivers say */

int cuDeviceGetCount(int *n) {
    if (!initialized) return NOT_INITIALIZED;
    INJECT("cuDeviceGetCount", -1);
    *n = n_devices();
    return SUCCESS;
}

int cuDeviceGet(int *dev, int ordinal) {
    if (!initialized) return NOT_INITIALIZED;
    if (ordinal < 0 || ordinal >= n_devices()) return 101;  /* CUDA_ERROR_INVALID_DEVICE */
    INJECT("cuDeviceGet", ordinal);
    *dev = ordinal;
    return SUCCESS;
}

int cuDeviceGetName(char *name, int len, int dev) {
    const char *src = NAMES[dev % N_BUILT];
    int i = 0;
    for (; src[i] && i < len - 1; i++) name[i] = src[i];
    name[i] = 0;
    return SUCCESS;
}

static int hex(char c) { return c <= '9' ? c - '0' : (c | 0x20) - 'a' + 10; }

int cuDeviceGetUuid_v2(unsigned char *uuid, int dev) {
    const char *s = UUIDS[dev % N_BUILT] + 4;  /* past "GPU-" */
    for (int i = 0; i < 16; s++) {
        if (*s == '-') continue;
        uuid[i++] = (unsigned char)(hex(s[0]) << 4 | hex(s[1]));
        s++;
    }
    return SUCCESS;
}
int cuDeviceGetUuid(unsigned char *uuid, int dev) { return cuDeviceGetUuid_v2(uuid, dev); }

int cuDevicePrimaryCtxRetain(void **ctx, int dev) {
    if (!initialized) return NOT_INITIALIZED;
    INJECT("cuDevicePrimaryCtxRetain", dev);
    *ctx = (void *)(long)(dev + 1);
    return SUCCESS;
}
int cuDevicePrimaryCtxRelease_v2(int dev) { (void)dev; return SUCCESS; }
int cuDevicePrimaryCtxRelease(int dev) { return cuDevicePrimaryCtxRelease_v2(dev); }

int cuCtxSetCurrent(void *ctx) {
    long d = (long)ctx - 1;
    if (d < 0 || d >= n_devices()) return INVALID_CONTEXT;
    current = (int)d;
    return SUCCESS;
}

/* A device pointer: the device in the high word, the byte offset into its table in the low word. */
int cuMemAlloc_v2(u64 *dptr, size_t bytes) {
    if (current < 0) return INVALID_CONTEXT;
    INJECT("cuMemAlloc", current);
    int words = (int)((bytes + 3) / 4);
    int at = __sync_fetch_and_add(&next_word[current], words);
    if (at + words > WORDS) return 2;  /* CUDA_ERROR_OUT_OF_MEMORY */
    *dptr = ((u64)(current + 1) << 32) | (u64)(at * 4 + 0x1000);
    return SUCCESS;
}
int cuMemFree_v2(u64 dptr) { (void)dptr; return SUCCESS; }

static unsigned int *word(u64 dptr) {
    int dev = (int)(dptr >> 32) - 1;
    long off = (long)(dptr & 0xffffffffu) - 0x1000;
    if (dev != current || off < 0 || off / 4 >= WORDS) return 0;
    return &memory[dev][off / 4];
}

int cuMemcpyHtoD_v2(u64 dst, const void *src, size_t n) {
    unsigned int *w = word(dst);
    if (!w || n != 4) return INVALID_VALUE;
    memcpy(w, src, 4);
    return SUCCESS;
}

int cuMemcpyDtoH_v2(void *dst, u64 src, size_t n) {
    unsigned int *w = word(src);
    if (!w || n != 4) return INVALID_VALUE;
    memcpy(dst, w, 4);
    return SUCCESS;
}

int cuModuleLoadData(void **module, const void *image) {
    if (current < 0) return INVALID_CONTEXT;
    INJECT("cuModuleLoadData", current);
    /* Accept only PTX that defines the proof's kernel with the instructions its arithmetic needs. */
    const char *ptx = image;
    if (!strstr(ptx, ".entry gpuprep_probe") || !strstr(ptx, "mul.lo.u32") || !strstr(ptx, "st.global.u32"))
        return 218;  /* CUDA_ERROR_INVALID_PTX */
    *module = (void *)0x5eed;
    return SUCCESS;
}
int cuModuleUnload(void *module) { (void)module; return SUCCESS; }

int cuModuleGetFunction(void **fn, void *module, const char *name) {
    if (module != (void *)0x5eed) return INVALID_HANDLE;
    if (strcmp(name, "gpuprep_probe") != 0) return NOT_FOUND;
    *fn = (void *)0xf00d;
    return SUCCESS;
}

int cuLaunchKernel(void *fn, unsigned gx, unsigned gy, unsigned gz, unsigned bx, unsigned by, unsigned bz,
                   unsigned shared, void *stream, void **params, void **extra) {
    (void)gx; (void)gy; (void)gz; (void)bx; (void)by; (void)bz; (void)shared; (void)stream; (void)extra;
    if (fn != (void *)0xf00d) return INVALID_HANDLE;
    int f = injected("cuLaunchKernel", current);
    if (f > 0) return f;
    unsigned int *w = word(*(u64 *)params[0]);
    if (!w) return 700;  /* CUDA_ERROR_ILLEGAL_ADDRESS */
    unsigned int seed = *(unsigned int *)params[1];
    *w = *w * 3u + seed + (f == -2 ? 1u : 0u);
    return SUCCESS;
}

int cuCtxSynchronize(void) {
    if (current < 0) return INVALID_CONTEXT;
    INJECT("cuCtxSynchronize", current);
    const char *e = getenv("GPUPREP_STANDIN_CUDA_DELAY_MS");
    long ms = e && *e ? atol(e) : BUILT_DELAY_MS;
    if (ms > 0) sleep_ms(ms);
    return SUCCESS;
}

int cuGetErrorName(int code, const char **name) {
    switch (code) {
    case 0: *name = "CUDA_SUCCESS"; return SUCCESS;
    case 3: *name = "CUDA_ERROR_NOT_INITIALIZED"; return SUCCESS;
    case 35: *name = "CUDA_ERROR_INSUFFICIENT_DRIVER"; return SUCCESS;
    case 46: *name = "CUDA_ERROR_DEVICES_UNAVAILABLE"; return SUCCESS;
    case 100: *name = "CUDA_ERROR_NO_DEVICE"; return SUCCESS;
    case 218: *name = "CUDA_ERROR_INVALID_PTX"; return SUCCESS;
    case 304: *name = "CUDA_ERROR_OPERATING_SYSTEM"; return SUCCESS;
    case 802: *name = "CUDA_ERROR_SYSTEM_NOT_READY"; return SUCCESS;
    case 999: *name = "CUDA_ERROR_UNKNOWN"; return SUCCESS;
    default: *name = 0; return INVALID_VALUE;
    }
}
"""


def build(dest: Path, gpus=DEFAULT_GPUS, *, fail: str = "", delay_ms: int = 0) -> Path:
    """Compile the stand-in into ``dest``/libcuda.so.1 (load it by path, or put ``dest`` on LD_LIBRARY_PATH);
    ``fail``/``delay_ms``: the failure and per-device delay it has without the environment variables."""
    dest.mkdir(parents=True, exist_ok=True)
    source = (C_SOURCE.replace("@N@", str(len(gpus)))
              .replace("@NAMES@", ", ".join(json.dumps(g["name"]) for g in gpus))
              .replace("@UUIDS@", ", ".join(json.dumps(g["uuid"]) for g in gpus))
              .replace("@FAIL@", json.dumps(fail)).replace("@DELAY@", str(int(delay_ms))))
    c_file = dest / "fake_cuda.c"
    c_file.write_text(source)
    lib = dest / "libcuda.so.1"
    subprocess.run(["gcc", "-shared", "-fPIC", "-O1", "-Wall", "-Werror", "-Wl,-soname,libcuda.so.1",
                    "-o", str(lib), str(c_file)], check=True, capture_output=True, text=True, timeout=60)
    return lib
