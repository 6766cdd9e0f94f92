"""How many NVIDIA GPUs each EC2 GPU instance type has, whether its GPUs sit on an NVSwitch fabric, how many EFA
devices it has, and where a cold GPU init outlasts the runtime's timeout.

Data, not code: the knowledge table ``ec2-gpu-instances`` (gpuprep/knowledge/data/ec2-gpu-instances.json, or a
newer one in /etc/gpuprep/knowledge.d), one row per family with the AWS page that lists its sizes. A type the table
lacks is said as such, never guessed: a new family gets a row there.
"""

from __future__ import annotations

from dataclasses import dataclass, field


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

    def as_dict(self) -> dict:
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
                        family.cold_init_times_out and n > 1, family.nvswitch, family.efa.get(size))
