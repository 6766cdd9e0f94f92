"""The GPU fabric of NVSwitch hosts as NVML sees it, per GPU: fabric state, status, health mask, clique id, NVLinks.

On NVSwitch / NVLink-switched hosts (p4d, p4de, p5, p5e, p5en, p6-b200, p6-b300, p6e-gb200: ``ec2/instance_types``)
a GPU joins the fabric only once nvidia-fabricmanager (or, on NVLink5, nvlsm with it) has trained it; until then
CUDA fails with 802 while nvidia-smi looks healthy (docs/domain.md, "The fabric"). NVML says where each GPU is:
``nvmlDeviceGetGpuFabricInfoV`` fills ``nvmlGpuFabricInfo_v2_t`` (state, status, cliqueId, clusterUuid, healthMask;
nvidia-ml-py's ``c_nvmlGpuFabricInfoV_t``); drivers before R550 only have ``nvmlDeviceGetGpuFabricInfo`` (no health
mask). ``nvmlDeviceGetNvLinkState`` says per link whether it is up.

``read_fabric(nv)`` takes the ``pynvml`` module as a parameter (tests pass the real one over a stand-in library);
``query_fabric`` bounds it with a deadline as ``gpu/query.py`` bounds NVML.
"""

from __future__ import annotations

import contextlib
import ctypes
import threading
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from gpuprep.gpu.query import NVML_DEADLINE_S

# nvml.h nvmlGpuFabricState_t
STATES = {0: "not-supported", 1: "not-started", 2: "in-progress", 3: "completed"}
NOT_SUPPORTED, NOT_STARTED, IN_PROGRESS, COMPLETED = "not-supported", "not-started", "in-progress", "completed"

# nvml.h NVML_GPU_FABRIC_HEALTH_MASK_*: (part, shift, width mask, value -> word). 0 is "not supported" in each.
HEALTH_PARTS = (
    ("degraded_bandwidth", 0, 0x3, {1: "true", 2: "false"}),
    ("route_recovery", 2, 0x3, {1: "true", 2: "false"}),
    ("route_unhealthy", 4, 0x3, {1: "true", 2: "false"}),
    ("access_timeout_recovery", 6, 0x3, {1: "true", 2: "false"}),
    ("incorrect_configuration", 8, 0xF, {1: "none", 2: "incorrect-sysguid", 3: "incorrect-chassis-sn",
                                         4: "no-partition", 5: "insufficient-nvlinks", 6: "incompatible-gpu-fw",
                                         7: "invalid-location", 8: "gpu-state-invalid"}),
    ("partition_assigned", 12, 0x3, {1: "true", 2: "false"}),
    ("gfm_state", 14, 0x3, {1: "connected", 2: "disconnected"}),
)
# What a part's value means when it is a problem, in words for the summary.
PROBLEM_WORDS = {
    ("degraded_bandwidth", "true"): "degraded bandwidth",
    ("route_recovery", "true"): "route recovery in progress",
    ("route_unhealthy", "true"): "route unhealthy",
    ("access_timeout_recovery", "true"): "access timeout recovery in progress",
    ("gfm_state", "disconnected"): "global fabric manager disconnected",
}
NVML_ERROR_NOT_SUPPORTED, NVML_ERROR_INVALID_ARGUMENT, NVML_ERROR_FUNCTION_NOT_FOUND = 3, 2, 13
MAX_LINKS = 18  # NVLink4 (H100) has 18 per GPU, NVLink5 (B200) 18 as well; NVML answers InvalidArgument past them


def decode_health(mask: int) -> dict[str, str]:
    """The health mask in named parts: ``{"degraded_bandwidth": "false", "incorrect_configuration": "none", ...}``
    ("not-supported" for a part the driver does not report)."""
    return {name: words.get((mask >> shift) & width, "not-supported") for name, shift, width, words in HEALTH_PARTS}


def health_problems(health: dict[str, str]) -> list[str]:
    found = [PROBLEM_WORDS[(k, v)] for k, v in health.items() if (k, v) in PROBLEM_WORDS]
    config = health.get("incorrect_configuration", "not-supported")
    if config not in ("none", "not-supported"):
        found.append(f"incorrect configuration ({config})")
    return found


@dataclass
class GpuFabric:
    index: int
    uuid: str = ""
    state: str = NOT_SUPPORTED
    status: int | None = None  # nvmlReturn_t of the fabric's registration; 0 once it succeeded
    status_text: str = ""
    clique_id: int | None = None
    cluster_uuid: str = ""
    health_mask: int | None = None  # None: the driver has no health mask (before nvmlGpuFabricInfo_v2)
    health: dict[str, str] = field(default_factory=dict)
    links_up: list[int] = field(default_factory=list)
    links_down: list[int] = field(default_factory=list)
    error: str = ""

    @property
    def problems(self) -> list[str]:
        return health_problems(self.health)


@dataclass
class FabricView:
    gpus: list[GpuFabric] = field(default_factory=list)
    error: str = ""
    skipped: str = ""
    duration_ms: float = 0.0
    waited_s: float = 0.0  # how long doctor --boot waited for the fabric to settle

    @property
    def answered(self) -> bool:
        return not self.error and not self.skipped

    def as_dict(self) -> dict[str, Any]:
        return {"gpus": [asdict(g) for g in self.gpus], "error": self.error, "duration_ms": round(self.duration_ms, 1),
                "waited_s": self.waited_s}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> FabricView:
        return cls([GpuFabric(**g) for g in d.get("gpus", [])], d.get("error", ""), d.get("skipped", ""),
                   d.get("duration_ms", 0.0))


def _code(exc: Exception) -> int | None:
    return getattr(exc, "value", None)


def _text(value: Any) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


def _fabric_info(nv: Any, handle: Any, gpu: GpuFabric) -> None:
    info = None
    try:
        info = nv.c_nvmlGpuFabricInfoV_t()
        nv.nvmlDeviceGetGpuFabricInfoV(handle, ctypes.byref(info))
        gpu.health_mask = int(info.healthMask)
        gpu.health = decode_health(gpu.health_mask)
    except AttributeError:
        info = None  # a binding without the V call
    except nv.NVMLError as exc:
        if _code(exc) != NVML_ERROR_FUNCTION_NOT_FOUND:
            if _code(exc) == NVML_ERROR_NOT_SUPPORTED:
                return  # no fabric on this GPU: state stays not-supported
            raise
        info = None
    if info is None:
        info = nv.c_nvmlGpuFabricInfo_t()
        nv.nvmlDeviceGetGpuFabricInfo(handle, ctypes.byref(info))
    gpu.state = STATES.get(int(info.state), f"state {int(info.state)}")
    gpu.status = int(info.status)
    if gpu.status:
        with contextlib.suppress(Exception):
            gpu.status_text = _text(nv.nvmlErrorString(gpu.status))
    gpu.clique_id = int(info.cliqueId)
    raw = bytes(info.clusterUuid)
    gpu.cluster_uuid = raw.hex() if any(raw) else ""


def _links(nv: Any, handle: Any, gpu: GpuFabric) -> None:
    for link in range(MAX_LINKS):
        try:
            up = nv.nvmlDeviceGetNvLinkState(handle, link)
        except nv.NVMLError as exc:
            if _code(exc) in (NVML_ERROR_NOT_SUPPORTED, NVML_ERROR_INVALID_ARGUMENT):
                continue  # no such link on this GPU
            raise
        (gpu.links_up if up else gpu.links_down).append(link)


def read_fabric(nv: Any) -> FabricView:
    started = time.monotonic()
    nv.nvmlInit()
    try:
        gpus = []
        for i in range(nv.nvmlDeviceGetCount()):
            gpu = GpuFabric(index=i)
            try:
                handle = nv.nvmlDeviceGetHandleByIndex(i)
                gpu.uuid = _text(nv.nvmlDeviceGetUUID(handle))
                _fabric_info(nv, handle, gpu)
                _links(nv, handle, gpu)
            except nv.NVMLError as exc:
                gpu.error = f"GPU {i}: {exc}"
            gpus.append(gpu)
    finally:
        with contextlib.suppress(nv.NVMLError):
            nv.nvmlShutdown()
    return FabricView(gpus, duration_ms=(time.monotonic() - started) * 1000)


def query_fabric(deadline_s: float = NVML_DEADLINE_S, nv: Any = None) -> FabricView:
    """``read_fabric`` in a daemon thread with a deadline (NVML can hang with a stuck driver)."""
    if nv is None:
        try:
            import pynvml
        except ImportError as exc:
            return FabricView(error=f"nvidia-ml-py is not importable ({exc})")
        nv = pynvml
    box: dict[str, FabricView] = {}

    def ask() -> None:
        try:
            box["v"] = read_fabric(nv)
        except nv.NVMLError as exc:
            box["v"] = FabricView(error=f"NVML: {exc}")
        except Exception as exc:  # a binding bug must not take doctor down
            box["v"] = FabricView(error=f"NVML: {type(exc).__name__}: {exc}")

    t = threading.Thread(target=ask, name="nvml-fabric", daemon=True)
    t.start()
    t.join(deadline_s)
    if t.is_alive():
        return FabricView(error=f"NVML did not answer within {deadline_s:g}s")
    return box["v"]


if __name__ == "__main__":  # what a test runs over a stand-in libnvidia-ml: the view as JSON
    import json
    import sys

    json.dump(query_fabric().as_dict(), sys.stdout)
