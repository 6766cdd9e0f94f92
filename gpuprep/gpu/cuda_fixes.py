"""What clears each way the CUDA proof fails (gpu-cuda), by CUDA's own error name (cuda.h CUresult; the meanings are
gpu/cuda.py's ``CUDA_CAUSES``). The proof runs on the running system only, so every fix here is for this host."""

from __future__ import annotations

from gpuprep import fixes
from gpuprep.gpu import inventory
from gpuprep.gpu.nvml_fixes import RPM_NVML
from gpuprep.gpu.query import MOVE_HARDWARE
from gpuprep.runner.checks import Probes

RPM_LIBCUDA = RPM_NVML.replace("libnvidia-ml", "libcuda")  # the driver's RPMs put libcuda.so.1 beside NVML


def cuda_fixes(probes: Probes, error: str) -> list[fixes.Fix]:
    """The fixes of the proof's first failure, ``error`` its CUDA name."""
    from gpuprep.gpu.checks import device_node_fixes
    from gpuprep.gpu.fabric_checks import fabric_fixes

    host, p = probes.host, probes.platform
    found: list[fixes.Fix | None]
    if error == "CUDA_ERROR_SYSTEM_NOT_READY":
        return fabric_fixes(probes)
    if error == "CUDA_ERROR_NO_DEVICE":
        return [*device_node_fixes(probes), fixes.Fix("an empty or wrong CUDA_VISIBLE_DEVICES in the environment "
                                                       "hides them: unset it")]
    if error == "CUDA_ERROR_INSUFFICIENT_DRIVER":
        return [fixes.Fix("a cuda-compat libcuda on the library path is newer than the driver: take it off "
                          "LD_LIBRARY_PATH"),
                fixes.reboot(host, "else reboot to load the kernel module the installed libcuda belongs to")]
    if error == "CUDA_ERROR_DEVICES_UNAVAILABLE":
        return [fixes.on_running_system(host, "who holds the GPUs (exclusive-process mode lets one process have each)",
                                        ["nvidia-smi", "--query-compute-apps=pid,process_name,gpu_uuid",
                                         "--format=csv"]),
                fixes.on_running_system(host, "return every GPU to shared compute mode (unless exclusive mode is "
                                        "wanted: then stop the process holding it)", ["nvidia-smi", "-c", "DEFAULT"])]
    if error == "CUDA_ERROR_OPERATING_SYSTEM":
        nodes = inventory.probe_nodes(probes)
        paths = [str(host.path(f"/dev/{n}")) for n in (*nodes.gpus, "nvidiactl", "nvidia-uvm")]
        return [fixes.Fix("the device nodes must be crw-rw-rw- (the driver makes them so unless NVreg_DeviceFileMode "
                          "in /etc/modprobe.d says otherwise)", fixes.as_user(host, ["chmod", "0666", *paths])),
                fixes.Fix("an SELinux denial is the other cause: its audit records", fixes.as_user(
                    host, ["ausearch", "-m", "avc", "-ts", "boot"]))]
    if error in ("CUDA_ERROR_STUB_LIBRARY", "CUDA_ERROR_SYSTEM_DRIVER_MISMATCH"):
        what = "the CUDA toolkit's stubs directory" if error == "CUDA_ERROR_STUB_LIBRARY" else \
            "the cuda-compat libraries"
        return [fixes.Fix(f"take {what} off LD_LIBRARY_PATH and out of /etc/ld.so.conf.d"),
                fixes.in_image(host, "then refresh the linker's cache", ["ldconfig"])]
    if error in ("LIBCUDA_NOT_FOUND", "CUDA_ERROR_INVALID_PTX", "CUDA_ERROR_UNSUPPORTED_PTX_VERSION",
                 "CUDA_ERROR_NO_BINARY_FOR_GPU"):
        why = "install the driver's CUDA libraries (libcuda.so.1 and its PTX JIT ship with the driver)"
        verb = "install" if error == "LIBCUDA_NOT_FOUND" else "reinstall"
        found = [fixes.packages(host, p, verb, (RPM_LIBCUDA,), why) if p.package_manager in ("dnf", "yum")
                 else fixes.Fix(why), fixes.in_image(host, "then refresh the linker's cache", ["ldconfig"])]
        return [f for f in found if f is not None]
    if error == "WRONG_RESULT":
        return [fixes.on_running_system(host, "memory faults behind it (ECC, row remapping): drain the host",
                                        ["nvidia-smi", "-q", "-d", "ECC,ROW_REMAPPER"]),
                fixes.Fix("then " + MOVE_HARDWARE)]
    # A hung call, a driver that failed to initialise CUDA, an error nobody documents: the driver's state.
    found = [fixes.kernel_log(host, "the kernel log says why (NVRM lines, Xid)"),
             fixes.service(host, p, "enable", "nvidia-persistenced", "keep the driver initialised at every boot")
             if error == "TIMEOUT" else None,
             fixes.reboot(host, "reboot"),
             fixes.Fix("if it recurs, " + MOVE_HARDWARE)]
    return [f for f in found if f is not None]
