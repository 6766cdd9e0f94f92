"""The CUDA proof (gpuprep/gpu/cuda_proof.py run by gpu/cuda.py) and doctor's gpu-cuda, over a stand-in libcuda.

SIMULATED: the GPU and its driver (this machine has neither). libcuda.so.1 is a stand-in built with gcc from C
(tests/fake_cuda.py) that computes the proof kernel's arithmetic itself, so the value check is real, and fails with
each CUresult on demand. Real: the proof program, run as a child process of this interpreter exactly as doctor runs
it (``python3 -I -S cuda_proof.py``, bounded by a timeout), its threads, ctypes and the JSON it prints; and the check.
"""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import fake_cuda
import hosttree
import pytest

from gpuprep.gpu import cuda, cuda_checks, cuda_proof
from gpuprep.host import Host
from gpuprep.options import DoctorOptions
from gpuprep.platform import detect
from gpuprep.report import Status
from gpuprep.runner.checks import Probes, run_check

# The proof runs as a child of this interpreter; the stand-in is compiled with gcc.
pytestmark = pytest.mark.allow_subp(os.path.basename(sys.executable), "gcc")
CHECK = next(c for c in cuda_checks.CHECKS if c.id == "gpu-cuda")


@pytest.fixture(scope="module")
def libcuda(tmp_path_factory) -> Path:
    return fake_cuda.build(tmp_path_factory.mktemp("cuda"))


def on_p5(tmp_path: Path, proof: cuda.CudaProof, **options) -> Probes:
    """Doctor's probes over the p5 host tree (8 H100s, driver loaded), CUDA's answer the stand-in's real proof."""
    root = hosttree.build_named("healthy-p5-h100x8", tmp_path / "root")
    host = Host(root, env={})
    p = Probes(host, detect(host), DoctorOptions(**options))
    p.preset(cuda_checks.probe_cuda, proof)
    return p


def live(libcuda: Path, **env: str) -> Host:
    """The running system, its libcuda the stand-in (GPUPREP_LIBCUDA), failing as ``env`` asks."""
    return Host("/", env={**os.environ, "GPUPREP_LIBCUDA": str(libcuda), **env})


def test_the_proof_runs_the_kernel_on_every_device_and_checks_its_value(libcuda):
    proof = cuda.run_proof(live(libcuda, GPUPREP_STANDIN_CUDA_DEVICES="4"), 4)
    assert proof.ok, proof
    devices = proof.report["devices"]
    assert [d["ordinal"] for d in devices] == [0, 1, 2, 3]
    assert all(d["result"] == cuda_proof.expected_of(d["ordinal"]) for d in devices)
    assert devices[0]["uuid"] == "GPU-0e7d3af2-be49-affe-ae6c-f6fcf358f2ea"


def test_a_wrong_value_fails_the_proof(libcuda):
    proof = cuda.run_proof(live(libcuda, GPUPREP_STANDIN_CUDA_FAIL="wrong@cuLaunchKernel:1"))
    assert not proof.ok and proof.exit_code == 1
    (bad,) = proof.failures()
    assert (bad["ordinal"], bad["error"], bad["result"]) == (1, "WRONG_RESULT", cuda_proof.expected_of(1) + 1)
    summary, hint = cuda.describe(proof)
    assert "GPU 1 of 2" in summary and "wrong value" in summary and "stop and start" in hint


@pytest.mark.parametrize("fail, name, words", [
    ("802", "CUDA_ERROR_SYSTEM_NOT_READY", "nvidia-fabricmanager"),
    ("100", "CUDA_ERROR_NO_DEVICE", "nvidia-persistenced"),
    ("35", "CUDA_ERROR_INSUFFICIENT_DRIVER", "cuda-compat"),
    ("3", "CUDA_ERROR_NOT_INITIALIZED", "journalctl -k -b"),
    ("999", "CUDA_ERROR_UNKNOWN", "journalctl -k -b"),
    ("46@cuDevicePrimaryCtxRetain", "CUDA_ERROR_DEVICES_UNAVAILABLE", "nvidia-smi -c DEFAULT"),
    ("304@cuDevicePrimaryCtxRetain:1", "CUDA_ERROR_OPERATING_SYSTEM", "chmod 0666 "),
])
def test_each_cuda_error_is_critical_by_its_name_with_its_fix(tmp_path, libcuda, fail, name, words):
    """Each error's fixes are values (issue 26 item 3): argvs, never a command inside prose (gpu/cuda_fixes.py)."""
    proof = cuda.run_proof(live(libcuda, GPUPREP_STANDIN_CUDA_FAIL=fail))
    result = run_check(CHECK, on_p5(tmp_path, proof))
    assert result.status == Status.CRITICAL, result
    assert name in result.summary and words in result.hint
    assert result.fixes and all("`" not in f.command and "*" not in f.command for f in result.fixes), result.fixes
    code = int(fail.split("@")[0])
    assert f"({code})" in result.summary
    where = fail.partition("@")[2] or "cuInit"
    assert where.split(":")[0] in result.summary
    if ":" in fail:
        assert "GPU 1 of 2" in result.summary  # only the device that failed is named


def test_a_missing_libcuda_says_how_to_install_it(tmp_path):
    proof = cuda.run_proof(Host("/", env={**os.environ, "GPUPREP_LIBCUDA": str(tmp_path / "libcuda.so.1")}))
    assert proof.exit_code == 2
    summary, hint = cuda.describe(proof)
    assert "LIBCUDA_NOT_FOUND" in summary and "ldconfig" in hint


def test_a_hung_driver_is_a_finding_naming_the_call_not_a_hang(libcuda, monkeypatch):
    # The proof's own deadline, shortened: device 0's cuCtxSynchronize never returns.
    monkeypatch.setattr(cuda, "proof_timeouts", lambda n: (1.0, 10.0))
    proof = cuda.run_proof(live(libcuda, GPUPREP_STANDIN_CUDA_FAIL="hang@cuCtxSynchronize:0"))
    assert proof.exit_code == 1
    (hung,) = proof.failures()
    assert (hung["ordinal"], hung["call"], hung["error"]) == (0, "cuCtxSynchronize", "TIMEOUT")
    assert proof.report["devices"][1]["ok"] is True
    summary, hint = cuda.describe(proof)
    assert "CUDA failed on GPU 0 of 2: cuCtxSynchronize returned TIMEOUT" in summary and "Xid" in hint


def test_a_child_that_outlives_its_timeout_is_killed_and_said(libcuda, monkeypatch):
    # Both bounds shortened, the outer below the inner: the child is killed while cuInit hangs.
    monkeypatch.setattr(cuda, "proof_timeouts", lambda n: (30.0, 1.0))
    proof = cuda.run_proof(live(libcuda, GPUPREP_STANDIN_CUDA_FAIL="hang@cuInit"))
    assert not proof.ok and "did not finish within 1s" in proof.error
    summary, _ = cuda.describe(proof)
    assert "did not finish" in summary


def test_the_proof_is_not_run_inside_root(tmp_path):
    proof = cuda.run_proof(Host(tmp_path))
    assert proof.skipped and "--root" in proof.skipped


def test_healthy_check_says_what_ran(tmp_path, libcuda):
    proof = cuda.run_proof(live(libcuda, GPUPREP_STANDIN_CUDA_DEVICES="8"), 8)
    result = run_check(CHECK, on_p5(tmp_path, proof))
    assert result.status == Status.OK, result
    assert result.summary.startswith("CUDA works on 8 GPUs: a PTX kernel ran on each and returned the expected value")
    assert [d["result"] for d in result.data["devices"]] == [cuda_proof.expected_of(i) for i in range(8)]


def test_the_probe_runs_the_proof_on_the_running_system(libcuda):
    p = Probes(live(libcuda), detect(Host("/")), DoctorOptions())
    assert cuda_checks.probe_cuda(p).ok


def test_the_check_skips_inside_root_without_a_proof(tmp_path):
    root = hosttree.build_named("healthy-p5-h100x8", tmp_path / "root")
    host = Host(root, env={})
    result = run_check(CHECK, Probes(host, detect(host), DoctorOptions()))
    assert result.status == Status.SKIPPED and "--root" in result.summary


def test_the_proof_file_runs_as_a_plain_program_and_through_python_c(libcuda):
    """What a container runs: the file alone, outside the package, with -I; and its source through -c."""
    env = {"PATH": os.environ["PATH"], "GPUPREP_LIBCUDA": str(libcuda)}
    source = Path(cuda_proof.__file__).read_text()
    for argv in ([sys.executable, "-I", "-S", cuda_proof.__file__], [sys.executable, "-I", "-S", "-c", source]):
        done = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=60, cwd="/")
        assert done.returncode == 0, done.stderr
        assert cuda.parse_report(done.stdout)["ok"] is True


def test_the_module_form_runs_too(libcuda):
    done = subprocess.run([sys.executable, "-m", "gpuprep.gpu.cuda_proof"], capture_output=True, text=True,
                          env={**os.environ, "GPUPREP_LIBCUDA": str(libcuda)}, timeout=60)
    assert done.returncode == 0 and cuda.parse_report(done.stdout)["count"] == 2


def test_every_code_the_issue_names_has_a_cause_by_name():
    for code, name in cuda.CODES.items():
        assert cuda_proof.KNOWN_NAMES[code] == name
        assert cuda.cause_of(name) is cuda.CUDA_CAUSES[name]
        assert cuda.cause_of(f"CUresult {code}", code) is cuda.CUDA_CAUSES[name]


def test_failures_of_a_report_without_devices_are_the_init_failure():
    proof = cuda.CudaProof({"ok": False, "call": "cuInit", "code": 802, "error": "CUDA_ERROR_SYSTEM_NOT_READY",
                            "devices": []}, 2)
    assert proof.failures() == [{"call": "cuInit", "code": 802, "error": "CUDA_ERROR_SYSTEM_NOT_READY"}]
    assert dataclasses.replace(proof, exit_code=0).ok is False


def test_a_proof_begun_early_is_the_one_gpu_cuda_collects(libcuda):
    """doctor begins the child before it imports its checks (cli.doctor, cuda.start_early); the check then
    collects that child's report rather than starting another."""
    host = live(libcuda, GPUPREP_STANDIN_CUDA_DEVICES="2")
    pending = cuda.begin(host, 2)
    assert pending.proc is not None and pending.proc.pid > 0
    proof = cuda.run_proof(host, 2)
    assert proof.ok and len(proof.report["devices"]) == 2
    assert pending.proc.returncode == 0  # this child, reaped by run_proof
    assert id(host) not in cuda._early  # collected once: a second check would prove afresh


def test_an_early_proof_for_another_gpu_count_is_killed_and_the_proof_run_again(libcuda):
    host = live(libcuda, GPUPREP_STANDIN_CUDA_FAIL="hang@cuInit", GPUPREP_STANDIN_CUDA_DEVICES="1")
    stale = cuda.begin(host, 8)  # hangs in cuInit until killed
    healthy = live(libcuda, GPUPREP_STANDIN_CUDA_DEVICES="1")
    cuda._early[id(healthy)] = cuda._early.pop(id(host))  # the same run's host, its PCI count now 1
    proof = cuda.run_proof(healthy, 1)
    assert proof.ok, proof
    assert stale.proc.returncode == -9  # SIGKILL: the stale child does not outlive the run


def test_discard_kills_an_early_proof_doctor_never_asked_for(libcuda):
    pending = cuda.begin(live(libcuda, GPUPREP_STANDIN_CUDA_FAIL="hang@cuInit"), 1)
    pending.discard()
    assert pending.proc.returncode == -9
    assert pending not in cuda._early.values()  # forgotten: no later run_proof collects a killed child
    pending.discard()  # twice is harmless (cli's finally after a check that timed out)


def test_no_early_proof_without_a_loaded_driver_or_inside_root(tmp_path):
    """This machine has no nvidia module (SIMULATED GPU hosts are --root trees), and a --root run proves nothing."""
    assert not Path("/proc/driver/nvidia/version").exists()
    assert cuda.start_early(Host("/")) is None
    root = hosttree.build_named("healthy-p5-h100x8", tmp_path / "root")
    assert cuda.start_early(Host(root, env={})) is None
