"""gpu-cuda: a CUDA kernel runs on every GPU of the running system (``gpu/cuda.py`` runs the proof).

In the boot set: nvidia-smi can be healthy while every CUDA program fails (802 on an NVSwitch host whose fabric is
not up), and ECS must not get such a host. In ``doctor --boot`` on an NVSwitch type the proof first waits, bounded,
for the fabric to finish (``gpu/fabric_checks.wait_for_fabric``): at boot fabric manager may still be training it.
"""

from __future__ import annotations

from gpuprep.gpu import cuda, inventory
from gpuprep.gpu.cuda_fixes import cuda_fixes
from gpuprep.report import Status
from gpuprep.runner.checks import Check, NotApplicable, Probes, Verdict, probe


@probe
def probe_cuda(p: Probes) -> cuda.CudaProof:
    from gpuprep.gpu import fabric_checks

    pci = inventory.probe_pci(p)
    if not p.host.live:
        return cuda.CudaProof(skipped="CUDA is proven on the running system only (acting on --root)")
    waited = fabric_checks.wait_for_fabric(p) if p.options.boot else {}
    proof = cuda.run_proof(p.host, len(pci.gpus))
    proof.waited = waited
    return proof


def _fabric_wait_s() -> float:
    from gpuprep.gpu.fabric_checks import FABRIC_WAIT_S

    return FABRIC_WAIT_S


def check_cuda(probes: Probes) -> Verdict:
    from gpuprep.gpu.checks import _pci_gpus

    _pci_gpus(probes)
    module = inventory.probe_module(probes)
    if module.procfs and not module.loaded:
        raise NotApplicable("the nvidia kernel module is not loaded (see gpu-kernel-module)")
    proof = probe_cuda(probes)
    if proof.skipped:
        raise NotApplicable(proof.skipped)
    data = proof.as_data()
    if proof.ok:
        return Verdict(Status.OK, cuda.success_summary(proof), data=data)
    summary, _ = cuda.describe(proof)
    return Verdict(Status.CRITICAL, summary, data=data, fixes=cuda_fixes(probes, cuda.first_error(proof)))


# The proof's own bound on an 8-GPU host, after the boot's wait for the fabric.
_TIMEOUT = cuda.proof_timeouts(8)[1] + 2 + _fabric_wait_s()

CHECKS = [
    Check("gpu-cuda", "gpu", "a CUDA kernel runs on every GPU (driver API: context, copy, PTX JIT, launch, check)",
          check_cuda, timeout=_TIMEOUT, boot=True),
]
