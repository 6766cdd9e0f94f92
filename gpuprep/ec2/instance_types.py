"""How many NVIDIA GPUs each EC2 GPU instance type has, whether its GPUs sit on an NVSwitch fabric, how many EFA
devices it has, and where a cold GPU init outlasts the runtime's timeout.

Data, not code: the knowledge table ``ec2-gpu-instances`` (gpuprep/knowledge/data/ec2-gpu-instances.json, or a
newer one in /etc/gpuprep/knowledge.d), one row per family with the AWS page that lists its sizes. A type the table
lacks is said as such, never guessed: a new family gets a row there.

``cold_init_times_out``: on these families a container start with persistence mode off makes the driver
initialise every GPU (1-3 s each, NVIDIA/nvidia-docker 1279), which outlasts nvidia-container-cli's driver RPC
timeout: ``nvidia-container-cli: initialization error: driver rpc error: timed out`` on p5 ECS hosts
(bottlerocket-os/bottlerocket #3960), on multi-GPU hosts generally (NVIDIA/nvidia-container-toolkit #202,
NVIDIA/nvidia-docker 628 on p2.16xlarge). A single-GPU size of such a family initialises in time.

``nvswitch``: the GPUs talk over NVSwitch (NVLink4 on p4d to p5en, NVLink5 switch trays on p6), so CUDA needs
nvidia-fabricmanager to have trained the fabric first (error 802 before; docs/domain.md, "The fabric"). AWS's
p4 and p5 pages say "NVSwitch"; the p6 pages "NVLink 5th generation" / "NVL72" (gpu/fabric_checks.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Family:
    gpu: str  # the NVIDIA GPU model
    sizes: dict[str, int]  # size -> GPUs
    source: str  # the AWS page that lists the sizes
    cold_init_times_out: bool = False
    nvswitch: bool = False  # GPUs joined by NVSwitches: the fabric must be up before CUDA works
    efa: dict[str, int] = field(default_factory=dict)  # size -> EFA devices, where AWS lists them


def families() -> dict[str, Family]:
    from gpuprep import knowledge

    return {r["family"]: Family(r["gpu"], dict(r["sizes"]), r["source"], r["cold_init_times_out"], r["nvswitch"],
                                dict(r.get("efa", {})))
            for r in knowledge.table("ec2-gpu-instances").rows}


@dataclass(frozen=True)
class InstanceGpus:
    instance_type: str
    family: str
    gpus: int
    model: str
    source: str
    persistence_required: bool  # a cold init outlasts the runtime's timeout: the gate wants persistence mode
    nvswitch: bool = False
    efa: int | None = None  # EFA devices AWS lists for this size; None where it lists none

    def as_dict(self) -> dict[str, Any]:
        return {"instance_type": self.instance_type, "family": self.family, "expected": self.gpus,
                "model": self.model, "source": self.source, "persistence_required": self.persistence_required,
                "nvswitch": self.nvswitch, "efa": self.efa}


def lookup(instance_type: str) -> InstanceGpus | None:
    """``p5.48xlarge`` -> its GPUs; None for a type the table does not list (a CPU type, or a new one)."""
    family_name, _, size = instance_type.strip().lower().partition(".")
    family = families().get(family_name)
    if family is None or size not in family.sizes:
        return None
    n = family.sizes[size]
    return InstanceGpus(instance_type.strip(), family_name, n, family.gpu, family.source,
                        family.cold_init_times_out and n > 1, family.nvswitch and n > 1, family.efa.get(size))
