"""What clears each way the driver's user side fails to answer (gpu-nvml, gpu-driver-version): its library missing,
NVML stuck, a GPU lost or its InfoROM corrupt, an answer nobody documents. The module-not-loaded and API-mismatch
fixes are gpu/query.py's (``module_not_loaded_fixes``, ``driver_mismatch_fixes``); the meaning of each NVML code
is its ``NVML_CAUSES`` (nvml.h nvmlReturn_t)."""

from __future__ import annotations

from gpuprep import fixes
from gpuprep.gpu.query import MOVE_HARDWARE, GpuQuery, driver_mismatch_fixes, module_not_loaded_fixes
from gpuprep.host import Host
from gpuprep.platform import Platform

NVML_SONAME = "libnvidia-ml.so.1"
# Where the RPM driver packages put NVML (NVIDIA's CUDA repository, the ECS GPU AMIs); Ubuntu's is multiarch.
RPM_NVML = f"/usr/lib64/{NVML_SONAME}"


def userland_fixes(host: Host, platform: Platform, module_version: str | None) -> list[fixes.Fix]:
    """No libnvidia-ml.so.1 (or no nvidia-smi) although the driver is there: the driver's user side from the package
    that ships the library (dnf and yum resolve a path to its package; Ubuntu's libnvidia-compute-<branch> ships it),
    then the linker's cache. A package of another version than the module's is gpu-driver-version's next finding."""
    of = f" ({module_version}, the loaded module's)" if module_version else ""
    why = f"install the driver's user side{of}: the package that ships {NVML_SONAME}"
    if platform.package_manager in ("dnf", "yum"):
        install = fixes.packages(host, platform, "install", (RPM_NVML,), why)
    elif platform.package_manager == "apt" and module_version:
        install = fixes.packages(host, platform, "install", (f"libnvidia-compute-{module_version.split('.')[0]}",),
                                 why)
    else:
        install = fixes.Fix(why)
    return [install, fixes.in_image(host, "then refresh the linker's cache", ["ldconfig"])]


def unreadable_userland_fixes(host: Host, platform: Platform, nvml_lib: str) -> list[fixes.Fix]:
    """libnvidia-ml.so.1 is not the link to libnvidia-ml.so.<version> the driver's package makes (a copy, a hand
    edit): the package that owns it, reinstalled, puts the link back."""
    path = str(host.path(nvml_lib))
    if platform.package_format == "rpm":
        owner = ["rpm", "-qf", nvml_lib] if host.live else ["rpm", "--root", str(host.root), "-qf", nvml_lib]
    else:
        owner = ["dpkg", "-S", nvml_lib] if host.live else ["dpkg", "--root", str(host.root), "-S", nvml_lib]
    return [fixes.Fix(f"{path} should be a link to libnvidia-ml.so.<version>: the package that owns it",
                      tuple(owner)),
            fixes.Fix("reinstall that package (it puts the link back)")]


def nvml_fixes(host: Host, platform: Platform, query: GpuQuery, module_version: str | None) -> list[fixes.Fix]:
    """What clears NVML's (or nvidia-smi's) failure to answer, by its code (docs/domain.md; nvml.h), else by how it
    failed: stuck (no answer within the deadline), nvidia-smi missing, output gpuprep cannot read."""
    code = query.error_code
    if code == 9:
        return module_not_loaded_fixes(host)
    if code == 18:
        return driver_mismatch_fixes(host, platform)
    if code == 12 or query.failure == "no-userland":
        return userland_fixes(host, platform, module_version)
    if query.failure == "stuck":
        stuck = [fixes.kernel_log(host, "the kernel log says why the driver is stuck (NVRM lines, Xid)"),
                 fixes.service(host, platform, "enable", "nvidia-persistenced",
                               "keep the driver initialised at every boot (persistence mode)"),
                 fixes.reboot(host, "reboot if it persists")]
        return [f for f in stuck if f is not None]
    if query.failure == "unreadable":
        return [fixes.on_running_system(host, "nvidia-smi's own output: report it with gpuprep's version",
                                        ["nvidia-smi", "-q"])]
    return gpu_error_fixes(host, code)


def gpu_error_fixes(host: Host, code: int | None) -> list[fixes.Fix]:
    """A GPU's own error: fallen off the bus (NVML 15: a reboot brings it back once; recurring, it is the hardware's),
    its InfoROM corrupted (14: the hardware's), else whatever nvidia-smi and the kernel log say."""
    if code == 14:
        return [fixes.on_running_system(host, "names the GPU whose InfoROM is corrupted", ["nvidia-smi", "-q"]),
                fixes.Fix("drain it and have it replaced: " + MOVE_HARDWARE)]
    if code == 15:
        return [fixes.reboot(host, "drain the host and reboot"),
                fixes.Fix("if it happens again the GPU or its slot is failing: " + MOVE_HARDWARE)]
    return [fixes.on_running_system(host, "nvidia-smi names the error", ["nvidia-smi", "-q"]),
            fixes.kernel_log(host, "the kernel log shows the driver's view (NVRM lines)")]
