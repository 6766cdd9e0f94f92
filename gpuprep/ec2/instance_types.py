"""How many NVIDIA GPUs each EC2 GPU instance type has, and where a cold GPU init outlasts the runtime's timeout.

Data, not code: one row per family, with the AWS page that lists its sizes. Counts were checked against the
consolidated table in "Amazon EC2 instance types: accelerated computing" (docs.aws.amazon.com/ec2/latest/
instancetypes/ac.html) and AWS Batch's "GPU jobs" table (docs.aws.amazon.com/batch/latest/userguide/gpu-jobs.html,
which lists g3 through g6 and p2/p3 by size). A type this table lacks is said as such, never guessed: a new family
gets a row here.

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

from dataclasses import dataclass

_PAGE = "https://aws.amazon.com/ec2/instance-types/{}/"
ONE = ("xlarge", "2xlarge", "4xlarge", "8xlarge", "16xlarge")  # the one-GPU sizes of g4dn, g5, g6, g6e


@dataclass(frozen=True)
class Family:
    gpu: str  # the NVIDIA GPU model
    sizes: dict[str, int]  # size -> GPUs
    source: str  # the AWS page that lists the sizes
    cold_init_times_out: bool = False
    nvswitch: bool = False


def _one(*sizes: str) -> dict[str, int]:
    return {s: 1 for s in sizes}


FAMILIES: dict[str, Family] = {
    "g3s": Family("Tesla M60", _one("xlarge"), _PAGE.format("g3")),
    "g3": Family("Tesla M60", {**_one("4xlarge"), "8xlarge": 2, "16xlarge": 4}, _PAGE.format("g3")),
    "g4dn": Family("T4", {**_one(*ONE), "12xlarge": 4, "metal": 8}, _PAGE.format("g4")),
    "g5": Family("A10G", {**_one(*ONE), "12xlarge": 4, "24xlarge": 4, "48xlarge": 8}, _PAGE.format("g5")),
    "g5g": Family("T4G", {**_one(*ONE[:4]), "16xlarge": 2, "metal": 2}, _PAGE.format("g5g")),
    "g6": Family("L4", {**_one(*ONE), "12xlarge": 4, "24xlarge": 4, "48xlarge": 8}, _PAGE.format("g6")),
    "gr6": Family("L4", _one("4xlarge", "8xlarge"), _PAGE.format("g6")),
    "g6e": Family("L40S", {**_one(*ONE), "12xlarge": 4, "24xlarge": 4, "48xlarge": 8}, _PAGE.format("g6e")),
    "p2": Family("K80", {**_one("xlarge"), "8xlarge": 8, "16xlarge": 16}, _PAGE.format("p2"), True),
    "p3": Family("V100", {**_one("2xlarge"), "8xlarge": 4, "16xlarge": 8}, _PAGE.format("p3")),
    "p3dn": Family("V100 32GB", {"24xlarge": 8}, _PAGE.format("p3"), True),
    "p4d": Family("A100 40GB", {"24xlarge": 8}, _PAGE.format("p4"), True, nvswitch=True),
    "p4de": Family("A100 80GB", {"24xlarge": 8}, _PAGE.format("p4"), True, nvswitch=True),
    "p5": Family("H100", {**_one("4xlarge"), "48xlarge": 8}, _PAGE.format("p5"), True, nvswitch=True),
    "p5e": Family("H200", {"48xlarge": 8}, _PAGE.format("p5"), True, nvswitch=True),
    "p5en": Family("H200", {"48xlarge": 8}, _PAGE.format("p5"), True, nvswitch=True),
    "p6-b200": Family("B200", {"48xlarge": 8}, _PAGE.format("p6"), True, nvswitch=True),
    "p6-b300": Family("B300", {"48xlarge": 8}, _PAGE.format("p6"), True, nvswitch=True),
    # One instance of a GB200 NVL72 UltraServer: 4 Blackwell GPUs beside 2 Grace CPUs.
    "p6e-gb200": Family("GB200", {"36xlarge": 4}, _PAGE.format("p6"), True, nvswitch=True),
}


@dataclass(frozen=True)
class InstanceGpus:
    instance_type: str
    family: str
    gpus: int
    model: str
    source: str
    persistence_required: bool  # a cold init outlasts the runtime's timeout: the gate wants persistence mode
    nvswitch: bool = False  # the GPUs are joined by an NVSwitch fabric: fabric manager must train it first

    def as_dict(self) -> dict:
        return {"instance_type": self.instance_type, "family": self.family, "expected": self.gpus,
                "model": self.model, "source": self.source, "persistence_required": self.persistence_required,
                "nvswitch": self.nvswitch}


def lookup(instance_type: str) -> InstanceGpus | None:
    """``p5.48xlarge`` -> its GPUs; None for a type the table does not list (a CPU type, or a new one)."""
    family_name, _, size = instance_type.strip().lower().partition(".")
    family = FAMILIES.get(family_name)
    if family is None or size not in family.sizes:
        return None
    n = family.sizes[size]
    return InstanceGpus(instance_type.strip(), family_name, n, family.gpu, family.source,
                        family.cold_init_times_out and n > 1, family.nvswitch and n > 1)
