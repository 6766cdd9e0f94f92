"""Every problem doctor reports names its fix: each check's non-ok verdicts, provoked one by one, carry a hint
with a command to run or an edit to make (issue 2: "a hint for every non-ok result").

Simulated, because this machine has no GPU, driver, ECS or Amazon Linux: fake host trees (tests/hosttree.py) for
sysfs, /dev, /proc, libraries and config files; what the running system would answer (NVML, ``docker info``, the
dockerd process, the init system, the rpm database) seeded into the doctor's probes, mostly as the real producers
build it (``smi_failure`` on fixture output, ``read_kernel_log`` with no log to read, ``engine_info`` on a socket
nobody serves, the container probe's own ``_explain`` and ``_compare``). The checks and the runner are the real ones.
A last test makes sure no check is left out of the walk.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import os
import re
import time
from collections.abc import Callable
from pathlib import Path

import hosttree
import probekit
import pytest
from conftest import FIXTURES

from gpuprep import knowledge
from gpuprep.doctor import all_checks
from gpuprep.ec2.imds import InstanceType
from gpuprep.ecs.gate import GateState
from gpuprep.engine import gpu_container
from gpuprep.gpu import kernel_log
from gpuprep.gpu import query as gpu_query
from gpuprep.host import Host
from gpuprep.options import DoctorOptions
from gpuprep.packages import advisories
from gpuprep.packages.evr import EVR, Dep
from gpuprep.packages.resolve import Package
from gpuprep.platform import detect
from gpuprep.report import Status
from gpuprep.runner.checks import Probes, run_check
from gpuprep.services import ServiceState

pytestmark = pytest.mark.allow_subp("rpm", "systemctl")

FIX = FIXTURES
BY_ID = {c.id: c for c in all_checks()}
BUSES = ["0000:53:00.0", "0000:64:00.0"]
SHIM = "/usr/bin/nvidia-container-runtime"

# A fix is a command (in backticks, or a gpuprep / package-manager / systemctl command line) or a named edit of a file.
ACTION = re.compile(
    r"`[^`]+`"
    r"|\bgpuprep (?:--root \S+ )?(?:install|seal|doctor)\b"
    r"|(?:^|&& )(?:rm|printf|dnf|yum|systemctl|sudo) "
    r"|\b(?:set|add|remove|blacklist)\b[^.;]*\b(?:in|to|from)\b[^.;]*(?:/etc/|daemon\.json|ecs\.config)"
)


# -- building the situations ----------------------------------------------------------------------
def tree(tmp_path: Path, name: str = "healthy-p5-h100x8", **changes) -> Path:
    root = tmp_path / "root"
    hosttree.build(root, dataclasses.replace(hosttree.load_spec(name), **changes))
    return root


def probes(root: Path | str, *, euid: int = 0, env: dict | None = None, platform=None, **seeds) -> Probes:
    """Probes of ``root`` with ``seeds`` ({probe function's name: value}) answered as given."""
    host = Host(root, env=env or {}, euid=euid)
    p = Probes(host, platform or detect(host), DoctorOptions(image="nvidia/cuda:12.4.1-base"))
    return probekit.seed(p, **seeds)




def gpus(n: int = 2) -> list[gpu_query.GpuStatus]:
    return [gpu_query.GpuStatus(index=i, name="NVIDIA H100 80GB HBM3",
                                uuid=f"GPU-00000000-0000-0000-0000-00000000000{i}",
                        pci_bus_id=BUSES[i], persistence_mode=True, ecc_uncorrected_volatile=0,
                        remapped_rows_pending=False, remapped_rows_failure=False,
                        clock_events=gpu_query.clock_events_from_mask(0), driver_version="580.95.05")
            for i in range(n)]


def nvml(**changes) -> gpu_query.GpuQuery:
    """NVML's answer for two H100s, healthy unless ``changes`` (GpuStatus fields) say otherwise."""
    return gpu_query.GpuQuery(source="nvml", gpus=[dataclasses.replace(x, **changes) for x in gpus()],
                      driver_version="580.95.05")


def p5(tmp_path: Path, **seeds) -> Probes:
    return probes(tree(tmp_path, gpus=hosttree.gpus("H100", BUSES)), **seeds)


def write(root: Path, host_path: str, text: str, mode: int = 0o644) -> Path:
    path = root / host_path.lstrip("/")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(mode)
    return path


def info(default: str = "nvidia", runtimes: dict | None = None) -> dict:
    return {"ServerVersion": "25.0.6", "DefaultRuntime": default,
            "Runtimes": {"runc": {"path": "runc"}} if runtimes is None else runtimes}


def docker_probes(tmp_path: Path, daemon_json: dict | str | None = None, **seeds) -> Probes:
    root = tree(tmp_path)
    if daemon_json is not None:
        write(root, "/etc/docker/daemon.json", daemon_json if isinstance(daemon_json, str) else json.dumps(daemon_json))
    return probes(root, env={"DOCKER_HOST": f"unix://{tmp_path}/docker.sock"}, engine_process=None, **seeds)


def ctk_dropped_features(tmp_path: Path) -> Probes:
    """What `nvidia-ctk runtime configure --cdi.enabled` (1.18.0, 1.20.0) leaves after gpuprep wrote daemon.json: its
    runtime entry and features replaced by {"cdi": true}; gpuprep's backup still holds the user's features."""
    probes_ = docker_probes(tmp_path, {"features": {"cdi": True},
                                       "runtimes": {"nvidia": {"args": [], "path": "nvidia-container-runtime"}}})
    write(tmp_path / "root", "/etc/docker/daemon.json.gpuprep-20261207T101010123456Z",
          json.dumps({"features": {"containerd-snapshotter": True}, "log-driver": "journald"}))
    return probes_


def no_engine(tmp_path: Path) -> Probes:
    """The real ``docker info`` probe on a socket nobody serves."""
    return probes(tree(tmp_path), env={"DOCKER_HOST": f"unix://{tmp_path}/gone.sock"}, engine_process=None)


def container(tmp_path: Path, monkeypatch, result: gpu_container.ProbeResult) -> Probes:
    monkeypatch.setattr(gpu_container, "probe", lambda *a, **k: result)
    return p5(tmp_path, docker_info=info(), host_view=gpu_container.HostGpus(["GPU-a", "GPU-b"], "nvml"))


def explained(link: str, message: str, docker_info: dict) -> gpu_container.ProbeResult:
    link, summary, hint = gpu_container._explain(link, message, docker_info, "nvidia/cuda:12.4.1-base")
    return gpu_container.ProbeResult(False, link, summary, hint, "nvidia/cuda:12.4.1-base")


def fewer_gpus() -> gpu_container.ProbeResult:
    result = gpu_container.ProbeResult(True, "ok", "1 GPU(s) visible", image="nvidia/cuda:12.4.1-base",
                                       gpus=[gpu_container.ContainerGpu(0, "GPU-a", "H100", "580.95.05")])
    gpu_container._compare(result, gpu_container.HostGpus(["GPU-a", "GPU-b"], "nvml"))
    return result


def slow_container() -> gpu_container.ProbeResult:
    return gpu_container.ProbeResult(True, "ok", "2 GPU(s) visible", image="nvidia/cuda:12.4.1-base", seconds=25.0)


def live_platform(tmp_path: Path, **changes):
    return dataclasses.replace(detect(Host(tree(tmp_path))), **changes)


def service(tmp_path: Path, active: str, enabled: str, live: bool = True, boot_gate=None) -> Probes:
    state = ServiceState("ecs", active, enabled)
    if live:  # the running system's init answers (seeded: no ecs here); nothing else is read from /
        return probes("/", platform=live_platform(tmp_path), ecs_service_state=state,
                      boot_gate=boot_gate or GateState())
    return probes(tree(tmp_path), ecs_service_state=state)


def unit_installed(monkeypatch: pytest.MonkeyPatch, p: Probes) -> Probes:
    """ecs.service's unit file exists (on the running system, which here has none)."""
    monkeypatch.setattr(p.host, "exists", lambda path: str(path).endswith("/ecs.service"))
    return p


def package(name: str, evr: str, *requires: str) -> Package:
    return Package(name, EVR.parse(evr), requires=tuple(Dep.parse(r) for r in requires))


def lock_held(tmp_path: Path) -> Probes:
    pidfile = write(tmp_path, "/yum.pid", f"{os.getpid()}\n")  # this test's process holds "the lock"
    return probes("/", platform=live_platform(tmp_path, package_locks=(str(pidfile),)))


def sealed_with_baked_state(tmp_path: Path) -> Probes:
    root = tree(tmp_path)
    write(root, "/var/lib/ecs/data/agent.db", "")
    later = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 3600))
    write(root, "/etc/gpuprep/seal.json", json.dumps({"sealed_at": later, "gpuprep": "0.1.0"}))
    return probes(root)


def gpu_info(tmp_path: Path, text: str, query: gpu_query.GpuQuery | None = None) -> Probes:
    root = tree(tmp_path, gpus=hosttree.gpus("H100", BUSES))
    write(root, "/var/lib/ecs/gpu/nvidia-gpu-info.json", text)
    return probes(root, **({"probe_query": query} if query else {}))


def info_json(driver: str = "580.95.05", ids: list[str] | None = None) -> str:
    ids = [x.uuid for x in gpus()] if ids is None else ids
    return json.dumps({"DriverVersion": driver, "GPUIDs": ids})


def xids(tmp_path: Path, fixture: str) -> Probes:
    text = (FIX / "kmsg" / fixture).read_text()
    return p5(tmp_path, probe_kernel_log=kernel_log.KernelLog("journalctl", kernel_log.parse_kernel_log(text), lines=9))


def smi_failed(tmp_path: Path, fixture: str, code: int) -> Probes:
    return p5(tmp_path, probe_query=gpu_query.smi_failure(code, (FIX / "nvidia-smi" / fixture).read_text()))


def unreadable_userland(tmp_path: Path) -> Probes:
    root = tree(tmp_path, userland=None)
    write(root, "/usr/lib64/libnvidia-ml.so.1", "")  # a plain file: no .so.<version> to tell the version by
    return probes(root)


def hanging_nvml(tmp_path: Path) -> Probes:
    class HangingNvml:  # NVML init that never returns, as with some stuck drivers (docs/domain.md)
        class NVMLError(Exception):
            pass

        @staticmethod
        def nvmlInit():
            time.sleep(5)

    return p5(tmp_path, probe_query=gpu_query.query_nvml(0.05, nv=HangingNvml))


# (check id, situation, probes builder taking (tmp_path, monkeypatch))
Build = Callable[[Path, pytest.MonkeyPatch], Probes]
SITUATIONS: list[tuple[str, str, Build]] = [
    ("platform-os", "unknown distribution", lambda t, m: probes(tree(t, "unknown-distro"))),
    ("platform-root", "not root", lambda t, m: probes(tree(t), euid=1000)),
    ("platform-end-of-support", "Amazon Linux 2 after 2026-06-30", lambda t, m: probes(tree(t, "healthy-g5-al2"))),
    ("gpu-pci", "no NVIDIA GPU", lambda t, m: probes(tree(t, "no-gpu"))),
    ("gpu-pci", "nouveau bound", lambda t, m: probes(tree(t, gpus=hosttree.gpus("T4", BUSES, "nouveau")))),
    ("gpu-pci", "no driver bound, module loaded", lambda t, m: probes(tree(t, gpus=hosttree.gpus("T4", BUSES, None)))),
    ("gpu-pci", "bound to vfio-pci", lambda t, m: probes(tree(t, gpus=hosttree.gpus("T4", BUSES, "vfio-pci")))),
    ("gpu-device-nodes", "no /dev/nvidiaN", lambda t, m: probes(tree(t, nodes=0))),
    ("gpu-kernel-module", "not loaded", lambda t, m: probes(tree(t, "module-not-loaded-g4dn"))),
    ("gpu-kernel-module", "version unreadable",
     lambda t, m: probes(write(tree(t), "/proc/driver/nvidia/version", "garbled\n").parents[3])),
    ("gpu-nvml", "driver not loaded (nvidia-smi exit 9)", lambda t, m: smi_failed(t, "driver-not-loaded.txt", 9)),
    ("gpu-nvml", "NVML hangs", lambda t, m: hanging_nvml(t)),
    ("gpu-nvml", "a GPU fell off the bus",
     lambda t, m: p5(t, probe_query=gpu_query.GpuQuery(source="nvml", driver_version="580.95.05", gpus=[
         *gpus(1), gpu_query.GpuStatus(1, error="GPU 1: GPU is lost", error_code=15)]))),
    ("gpu-count", "PCI 2, /dev 1", lambda t, m: probes(tree(t, gpus=hosttree.gpus("H100", BUSES), nodes=1))),
    ("gpu-driver-version", "kernel module and userland differ", lambda t, m: probes(tree(t, "api-mismatch-al2"))),
    ("gpu-driver-version", "no libnvidia-ml", lambda t, m: probes(tree(t, userland=None))),
    ("gpu-driver-version", "NVML says API mismatch (18)",
     lambda t, m: probes(tree(t), probe_query=gpu_query.GpuQuery(source="nvml", error="NVML: mismatch",
                                                                   error_code=18))),
    ("gpu-driver-version", "userland version unreadable", lambda t, m: unreadable_userland(t)),
    ("gpu-persistence", "off", lambda t, m: p5(t, probe_query=nvml(persistence_mode=False))),
    ("gpu-ecc", "uncorrected errors", lambda t, m: p5(t, probe_query=nvml(ecc_uncorrected_volatile=3))),
    ("gpu-row-remap", "remap failed", lambda t, m: p5(t, probe_query=nvml(remapped_rows_failure=True))),
    ("gpu-row-remap", "remap pending", lambda t, m: p5(t, probe_query=nvml(remapped_rows_pending=True))),
    ("gpu-retired-pages", "retirement pending", lambda t, m: p5(t, probe_query=nvml(
        remapped_rows_pending=None, remapped_rows_failure=None, retired_pages_pending=True))),
    ("gpu-clocks", "HW thermal slowdown", lambda t, m: p5(t, probe_query=nvml(
        clock_events=gpu_query.clock_events_from_mask(0x40)))),
    ("gpu-instance-count", "a p5.48xlarge with 7 GPUs", lambda t, m: probes(
        tree(t, "short-p5-h100x7"), probe_instance_type=InstanceType("p5.48xlarge", via="IMDSv2"))),
    ("gpu-instance-count", "a g5.12xlarge with 2 GPUs", lambda t, m: p5(
        t, probe_instance_type=InstanceType("g5.12xlarge", via="IMDSv2"), probe_query=nvml())),
    ("gpu-persistence-required", "off on a p5", lambda t, m: p5(
        t, probe_instance_type=InstanceType("p5.48xlarge", via="IMDSv2"), probe_query=nvml(persistence_mode=False))),
    ("gpu-driver-drift", "userland replaced under the module", lambda t, m: probes(tree(t, "driver-drift-p5"))),
    ("gpu-driver-drift", "both moved since the seal",
     lambda t, m: probes(tree(t, "driver-drift-p5", module="580.105.08"))),
    ("gpu-xid", "Xid 79", lambda t, m: xids(t, "xid-79-fallen-off.txt")),
    ("gpu-xid", "application XIDs only", lambda t, m: xids(t, "app-errors-only.txt")),
    ("gpu-xid", "RmInitAdapter failed", lambda t, m: xids(t, "rm-init-failed.txt")),
    ("gpu-xid", "no kernel log readable", lambda t, m: p5(t, probe_kernel_log=kernel_log.read_kernel_log(
        Host("/", env={"PATH": str(t / "no-bin")}), kmsg=str(t / "no-kmsg")))),
    ("docker-engine", "no socket", lambda t, m: no_engine(t)),
    ("docker-daemon-json", '"runtimes": null', lambda t, m: docker_probes(t, '{"runtimes": null}')),
    ("docker-daemon-json", "not JSON", lambda t, m: docker_probes(t, '{"runtimes": {')),
    ("docker-nvidia-runtime", "not registered", lambda t, m: docker_probes(t, docker_info=info("runc"))),
    ("docker-nvidia-runtime", "in daemon.json, not loaded",
     lambda t, m: docker_probes(t, {"runtimes": {"nvidia": {"path": SHIM}}}, docker_info=info("runc"))),
    ("docker-runtime-binary", "binary gone",
     lambda t, m: docker_probes(t, docker_info=info(runtimes={"nvidia": {"path": str(t / "gone")}}))),
    ("docker-runtime-binary", "not executable",
     lambda t, m: docker_probes(t, docker_info=info(runtimes={"nvidia": {"path": str(write(t, "/rt", "x"))}}))),
    ("docker-default-runtime", "runc is the default", lambda t, m: docker_probes(
        t, docker_info=info("runc", {"runc": {"path": "runc"}, "nvidia": {"path": SHIM}}))),
    ("docker-runtime-once", "daemon.json and /etc/docker-runtimes.d", lambda t, m: twice(t)),
    ("docker-nvidia-ctk-edits", "arguments under nvidia-ctk's args",
     lambda t, m: docker_probes(t, {"runtimes": {"nvidia": {"args": ["--debug"], "path": SHIM}}})),
    ("docker-nvidia-ctk-edits", "features dropped by its CDI switch", lambda t, m: ctk_dropped_features(t)),
    ("gpu-container", "runtime not registered", lambda t, m: container(t, m, explained(
        gpu_container.NOT_DEFAULT, 'exec: "nvidia-smi": executable file not found in $PATH', info("runc")))),
    ("gpu-container", "runtime not default", lambda t, m: container(t, m, explained(
        gpu_container.NOT_DEFAULT, 'exec: "nvidia-smi": executable file not found in $PATH',
        info("runc", {"runc": {}, "nvidia": {"path": SHIM}})))),
    ("gpu-container", "runtime binary gone", lambda t, m: container(t, m, explained(
        gpu_container.RUNTIME_BINARY, "fork/exec /usr/bin/nvidia-container-runtime: no such file or directory",
        info()))),
    ("gpu-container", "fewer GPUs inside", lambda t, m: container(t, m, fewer_gpus())),
    ("gpu-container", "slow", lambda t, m: container(t, m, slow_container())),
    ("ecs-init", "not installed", lambda t, m: probes(tree(t), ecs_init_version=None)),
    ("ecs-gpu-support", "set to false",
     lambda t, m: probes(write(tree(t), "/etc/ecs/ecs.config", "ECS_ENABLE_GPU_SUPPORT=false\n").parents[2])),
    ("ecs-gpu-support", "quoted", lambda t, m: probes(
        write(tree(t), "/etc/ecs/ecs.config", 'ECS_ENABLE_GPU_SUPPORT="true"\n').parents[2])),
    ("ecs-gpu-support", "unset with ecs-init installed", lambda t, m: probes(
        write(tree(t), "/etc/ecs/ecs.config", "ECS_CLUSTER=gpu\n").parents[2], ecs_init_version="ecs-init-1.97.1-1")),
    ("ecs-gpu-info", "unreadable", lambda t, m: gpu_info(t, "{")),
    ("ecs-gpu-info", "another driver (--root)", lambda t, m: gpu_info(t, info_json("535.183.01"))),
    ("ecs-gpu-info", "in an image (--root)", lambda t, m: gpu_info(t, info_json())),
    ("ecs-gpu-info", "the build machine's UUIDs", lambda t, m: gpu_info(t, info_json(ids=["GPU-0e7d3af2"]), nvml())),
    ("ecs-gpu-info", "fewer GPUs", lambda t, m: gpu_info(t, info_json(ids=[gpus()[0].uuid]), nvml())),
    ("ecs-gpu-info", "older driver", lambda t, m: gpu_info(t, info_json("580.82.07"), nvml())),
    ("ecs-service", "disabled in an image", lambda t, m: service(t, "unknown", "disabled", live=False)),
    ("ecs-service", "failed", lambda t, m: service(t, "failed", "enabled")),
    ("ecs-service", "disabled", lambda t, m: service(t, "inactive", "disabled")),
    ("ecs-service", "enabled, not running", lambda t, m: service(t, "inactive", "enabled")),
    ("ecs-service", "init says nothing", lambda t, m: unit_installed(m, service(t, "unknown", "unknown"))),
    ("ecs-service", "held by the boot gate", lambda t, m: service(
        t, "inactive", "enabled", boot_gate=GateState(True, ["docker-runtime-binary"]))),
    ("package-lock", "held by this process", lambda t, m: lock_held(t)),
    ("seal-stamp", "not a JSON object", lambda t, m: probes(write(tree(t), "/etc/gpuprep/seal.json", "[]").parents[2])),
    ("ecs-stale-state", "checkpoint older than the seal", lambda t, m: sealed_with_baked_state(t)),
    ("ecs-gpu-health", "dcgm-init says XID_48", lambda t, m: probes(tree(t, "gpu-unhealthy-g5"))),
    ("ecs-gpu-health", "stale", lambda t, m: probes(tree(t, "gpu-unhealthy-g5", files={
        "/var/run/ecs/gpu-metrics.json": {"timestamp": "2026-01-01T00:00:00Z", "healthy": True, "gpus": []}}))),
    ("ecs-gpu-sharing-mps", "nvidia-mps.service not enabled", lambda t, m: probes(tree(t, "mps-not-enabled-g6"))),
    ("ecs-docker-requires", "Docker too old for ecs-init", lambda t, m: probes(tree(t), installed_rpm=[
        package("ecs-init", "1.99.0-1.amzn2023", "docker >= 26.0.0"), package("docker", "20.10.25-1.amzn2023.0.1")])),
    ("packages-installed", "nothing installed (rpm)", lambda t, m: probes(tree(t), installed_rpm=[])),
    ("packages-installed", "nothing installed (Ubuntu)",
     lambda t, m: probes(tree(t, "healthy-h200-ubuntu"), installed_deb={})),
    ("toolkit-stack", "config.toml is not TOML", lambda t, m: probes(
        write(tree(t, "al2023-ecs-gpu-2026"), "/etc/nvidia-container-runtime/config.toml", "[broken\n").parents[2],
        toolkit_version="1.18.1-1")),
    ("toolkit-security", "below the floor", lambda t, m: probes(tree(t, "al2-ecs-gpu-2024"),
                                                               toolkit_version="1.17.7-1")),
    ("toolkit-security", "ldconfig from the container", lambda t, m: probes(tree(t, "al2-ecs-gpu-2024"),
                                                                           toolkit_version="1.19.1-1")),
    ("driver-security", "below bulletin 5861, versionlocked", lambda t, m: probes(
        tree(t, "ecs-ami-2026-08-driver-580-159"))),
    ("driver-security", "below bulletin 5861, no lock", lambda t, m: probes(tree(t, module="580.159.03",
                                                                                 userland="580.159.03"))),
    ("dcgm-security", "DCGM 4.5.2 (bulletin 5857)", lambda t, m: probes(
        tree(t), dcgm_packages={"datacenter-gpu-manager-4-core": "1:4.5.2-1"})),
    ("distro-advisories", "ALAS pending for docker", lambda t, m: probes(tree(t), pending=advisories.Pending(
        [advisories.Advisory("ALAS2023-2026-1234", "Important", ["docker-25.0.8-1.amzn2023.0.5.x86_64"],
                             ["CVE-2026-0001"])], ["amazonlinux-048d533e04ba4c83"], "2026-12-07T00:00:00+00:00"))),
    ("knowledge-age", "a year old", lambda t, m: m.setattr(knowledge, "today", lambda: dt.date(2027, 12, 7))
     or probes(tree(t))),
    ("knowledge-files", "a world-writable table", lambda t, m: probes(write(
        tree(t), "/etc/gpuprep/knowledge.d/xid.json", knowledge.DATA.joinpath("xid.json").read_text(), 0o666
    ).parents[3])),
    ("toolkit-dev-char", "no udev rule in an image", lambda t, m: probes(tree(t, "al2-ecs-gpu-2024"),
                                                                        toolkit_version="1.17.8-1")),
    ("toolkit-cdi-specs", "a spec from another host", lambda t, m: probes(
        tree(t, "al2023-ecs-gpu-2026"), toolkit_version="1.18.1-1",
        host_view=gpu_container.HostGpus(["GPU-11111111-2222-3333-4444-555555555555"], "nvidia-smi"),
        )),
    ("toolkit-cdi-specs", "stale driver libraries", lambda t, m: probes(
        tree(t, "al2023-ecs-gpu-2026", module="590.44.01", userland="590.44.01"), toolkit_version="1.18.1-1")),
    ("packages-drift", "toolkit updated since the seal", lambda t, m: probes(
        tree(t, "driver-drift-p5"), installed_rpm=[
        package("ecs-init", "1.99.0-1.amzn2023"), package("docker", "25.0.8-1.amzn2023.0.5"),
        package("nvidia-container-toolkit", "1.18.0-1")])),
    ("packages-locked", "not locked, no plugin", lambda t, m: probes(tree(t), installed_rpm=[
        package("docker", "25.0.6-1.amzn2023.0.2"), package("ecs-init", "1.97.1-1.amzn2023", "docker >= 20.10.0")])),
]

# Issue 25: CUDA and the fabric, on the p5 tree (and p6 types) with the running system's answers seeded.
SITUATIONS += [
    ("gpu-cuda", "802 from cuInit", lambda t, m: fabric_probes(t, cuda=cuda_fail())),
    ("gpu-fabric-manager", "not installed", lambda t, m: fabric_probes(t)),
    ("gpu-fabric", "not started", lambda t, m: fabric_probes(t, fabric=fabric_view("not-started"))),
    ("gpu-nvlink", "links down", lambda t, m: fabric_probes(t, fabric=fabric_view("completed", down=[2]))),
    ("gpu-nvlink5", "no ib_umad, no nvlsm", lambda t, m: fabric_probes(t, "p6-b200.48xlarge")),
    ("gpu-imex", "no IMEX channel", lambda t, m: fabric_probes(t, "p6e-gb200.36xlarge", files={
        "/usr/lib/systemd/system/nvidia-imex.service": "[Service]\n"})),
    ("container-cuda", "no libcuda in the container", lambda t, m: container_cuda(t, m)),
]

# Issue 28: what breaks GPU hosts in 2026, each on a tree or with the running system's answer seeded.
SITUATIONS += [
    ("ec2-maintenance", "a retirement scheduled", lambda t, m: seeded(seeded(probes(tree(t)), "ec2.host_checks",
                                                                              "probe_scheduled_events", [{
        "Code": "instance-retirement", "State": "active", "NotBefore": "21 Dec 2026 09:00:43 GMT",
        "EventId": "instance-event-0d59937288b7"}]), "ec2.host_checks", "probe_instance_place",
        ("i-0abc1234def567890", "us-east-2"))),
    ("efa-devices", "a p5 without its EFA devices", lambda t, m: probes(
        tree(t, efa=0), probe_instance_type=InstanceType("p5.48xlarge", via="IMDSv2"))),
    ("gpu-pcie-link", "x8 of x16", lambda t, m: probes(tree(t, files={
        "/sys/bus/pci/devices/0000:53:00.0/current_link_width": "8\n",
        "/sys/bus/pci/devices/0000:53:00.0/max_link_width": "16\n"}))),
    ("gpu-vbios", "two versions", lambda t, m: probes(tree(t, files={
        f"/proc/driver/nvidia/gpus/{b}/information": f"Video BIOS: \t 96.00.{i}9.00.01\n"
        for i, b in enumerate(("0000:53:00.0", "0000:64:00.0"))}))),
    ("gpu-persistenced-socket", "no socket on a p5", lambda t, m: seeded(probes(
        tree(t), probe_instance_type=InstanceType("p5.48xlarge", via="IMDSv2")), "gpu.board_checks",
        "persistenced_socket", (False, 15.0))),
    ("gpu-mps-pipe", "MPS on /tmp/nvidia-mps", lambda t, m: probes(tree(t, "mps-not-enabled-g6"))),
    ("gpu-sources-listed", "NVML lists none on a p5", lambda t, m: probes(
        tree(t), probe_instance_type=InstanceType("p5.48xlarge", via="IMDSv2"),
        probe_query=gpu_query.GpuQuery(source="nvml", driver_version="580.95.05"))),
    ("toolkit-cdi-engine-reads", "additionalGids on Docker 25", lambda t, m: spec_probes(t, "25.0.16", v07=True)),
    ("toolkit-gpu-routes", "a stale spec read by --gpus", lambda t, m: spec_probes(t, "29.2.1", uvm_major=511)),
    ("toolkit-cdi-refresh", "not enabled", lambda t, m: spec_probes(t, "28.5.2", links={})),
]


def seeded(p: Probes, module: str, name: str, value) -> Probes:
    """Answer probe ``gpuprep.<module>.<name>`` with ``value``, as the running system would."""
    import importlib

    p.preset(getattr(importlib.import_module(f"gpuprep.{module}"), name), value)
    return p


def spec_probes(tmp_path: Path, engine: str, v07: bool = False, **changes) -> Probes:
    """The AMI's tree with the nvidia-cdi-hook stand-in; ``docker info`` seeded with ``engine`` and CDI on."""
    own = hosttree.load_spec("al2023-ecs-gpu-2026").files
    root = tree(tmp_path, "al2023-ecs-gpu-2026", files={**own, "/usr/bin/nvidia-cdi-hook": "#!/bin/sh\nexit 0\n"},
                **changes)
    if v07:
        spec = root / "var/run/cdi/nvidia.yaml"
        spec.write_text(spec.read_text().replace("cdiVersion: 0.5.0", "cdiVersion: 0.7.0").replace(
            "    - path: /dev/nvidia0\n", "    - path: /dev/nvidia0\n      additionalGids: [39]\n", 1))
    return probes(root, env={"DOCKER_HOST": f"unix://{tmp_path}/docker.sock"}, engine_process=None,
                  toolkit_version="1.19.1-1", host_view=None,
                  docker_info={"ServerVersion": engine, "CDISpecDirs": ["/etc/cdi", "/var/run/cdi"]})



def fabric_probes(tmp_path: Path, instance_type: str = "p5.48xlarge", cuda=None, fabric=None, files=None) -> Probes:
    from gpuprep.gpu import cuda_checks, fabric_checks

    p = probes(tree(tmp_path, files=files or {}), probe_instance_type=InstanceType(instance_type, via="IMDSv2"))
    if cuda is not None:
        p.preset(cuda_checks.probe_cuda, cuda)
    if fabric is not None:
        p.preset(fabric_checks.probe_fabric, fabric)
    return p


def cuda_fail():
    from gpuprep.gpu.cuda import CudaProof

    return CudaProof({"ok": False, "call": "cuInit", "code": 802, "error": "CUDA_ERROR_SYSTEM_NOT_READY",
                      "devices": []}, 2)


def fabric_view(state: str, down: list[int] | None = None):
    from gpuprep.gpu.fabric import FabricView, GpuFabric

    return FabricView([GpuFabric(i, state=state, status=0, clique_id=1, links_up=list(range(4)),
                                 links_down=down or []) for i in range(2)])


def container_cuda(tmp_path: Path, monkeypatch) -> Probes:
    from gpuprep.engine import cuda_container
    from gpuprep.gpu import cuda

    proof = cuda.CudaProof({"ok": False, "call": "dlopen", "code": -1, "error": "LIBCUDA_NOT_FOUND", "devices": []}, 2)
    summary, hint = cuda.describe(proof, "in the image: ")
    monkeypatch.setattr(cuda_container, "prove", lambda *a, **k: cuda_container.ContainerCuda(
        cuda_container.FAILED, summary, hint, "nvidia/cuda:12.4.1-base", report=proof.report))
    return p5(tmp_path, docker_info=info())


def twice(tmp_path: Path) -> Probes:
    p = docker_probes(tmp_path, {"runtimes": {"nvidia": {"path": SHIM}}})
    root = p.host.root
    write(root, SHIM, "#!/bin/sh\n", 0o755)
    (root / "etc/docker-runtimes.d").mkdir(parents=True)
    os.symlink(SHIM, root / "etc/docker-runtimes.d/nvidia")
    return p


@pytest.mark.parametrize("check_id, situation, build", SITUATIONS, ids=[f"{c}: {s}" for c, s, _ in SITUATIONS])
def test_every_problem_names_its_fix(tmp_path, monkeypatch, check_id, situation, build):
    p = build(tmp_path, monkeypatch)
    result = run_check(BY_ID[check_id], p)
    assert not result.summary.startswith("check failed"), result.summary
    assert result.status in (Status.WARNING, Status.CRITICAL, Status.UNKNOWN), (result.status, result.summary)
    assert result.hint.strip(), f"{check_id} ({situation}) is {result.status.value} without a hint"
    cause = run_check(BY_ID[result.cause], p) if result.cause else None
    if cause is not None and cause.status in (Status.WARNING, Status.CRITICAL, Status.UNKNOWN):
        # It follows from another finding, listed first with its fix, a command (issue 26).
        assert result.cause in result.hint or result.fixes, result.hint
        assert ACTION.search(cause.hint), f"{result.cause}, the cause of {check_id}: no command in {cause.hint!r}"
    else:  # on its own (a cause not found in this run leaves the finding's own fixes)
        assert ACTION.search(result.hint), f"{check_id} ({situation}): no command or edit in {result.hint!r}"
    # only this platform's commands: never "X (Y on Amazon Linux 1)"
    assert not re.search(r"on Amazon Linux (?:1|2)\)|` or `sudo update-initramfs", result.hint), result.hint
    if not p.host.live:  # a gpuprep command in a hint acts on the same --root
        assert not re.search(r"\bgpuprep (?!--root )(?:-\w+ )*(?:install|seal|doctor)\b", result.hint), result.hint


# Findings whose hint is still prose, not fixes as values (issue 26 item 3), each with why: the list only shrinks.
PROSE = {
    "container-cuda": "no libcuda in the container",  # the lead's (engine/cuda_container.py)
}


@pytest.mark.parametrize("check_id, situation, build", SITUATIONS, ids=[f"{c}: {s}" for c, s, _ in SITUATIONS])
def test_every_problem_carries_its_fixes_as_values(tmp_path, monkeypatch, check_id, situation, build):
    """A finding's fixes are argvs built for the platform and the target, or it names the finding it follows from
    (issue 26 item 3): a prose hint reaches neither --json's checks[].fixes nor the fix list's commands."""
    result = run_check(BY_ID[check_id], build(tmp_path, monkeypatch))
    if PROSE.get(check_id) == situation:
        assert not result.fixes and not result.cause, f"{check_id} ({situation}) now has fixes: drop it from PROSE"
        return
    assert result.fixes or result.cause, f"{check_id} ({situation}): a prose hint only: {result.hint!r}"
    for fix in result.fixes:
        assert fix.why and "`" not in fix.command, fix


def test_the_walk_covers_every_check():
    walked = {c for c, _, _ in SITUATIONS}
    assert walked == set(BY_ID), f"checks with no provoked problem: {sorted(set(BY_ID) - walked)}"


def test_the_runners_own_unknowns_name_a_command(tmp_path):
    """A check that hangs or crashes is unknown, and says how to see why."""
    from gpuprep.runner.checks import Check, Verdict, run_checks

    checks = [Check("hangs", "gpu", "t", lambda p: time.sleep(2) or Verdict(Status.OK, ""), timeout=0.05),
              Check("crashes", "gpu", "t", lambda p: 1 / 0)]
    report = run_checks(Host(tmp_path, env={}), detect(Host(tmp_path)), DoctorOptions(), checks)
    for c in report.checks:
        assert c.status is Status.UNKNOWN and ACTION.search(c.hint), c


def test_a_runtime_defined_twice_with_the_same_path_is_fine(tmp_path):
    """Engines before 23 need daemon.json to name the runtimes.d runtime too (same path) for default-runtime."""
    p = docker_probes(tmp_path, {"runtimes": {"nvidia": {"path": "/etc/docker-runtimes.d/nvidia"}},
                                 "default-runtime": "nvidia"})
    root = p.host.root
    write(root, SHIM, "#!/bin/sh\n", 0o755)
    (root / "etc/docker-runtimes.d").mkdir(parents=True)
    os.symlink(SHIM, root / "etc/docker-runtimes.d/nvidia")
    result = run_check(BY_ID["docker-runtime-once"], p)
    assert result.status is Status.OK and result.data["same_path"] == ["nvidia"] and result.data["twice"] == []


# -- one cause, one fix; this platform's commands -----------------------------------------------------------
ENGINE_DEPENDENTS = ("docker-nvidia-runtime", "docker-runtime-binary", "docker-default-runtime", "gpu-container")


def test_an_engine_that_does_not_answer_is_one_finding_with_one_fix(tmp_path):
    """docker-engine says it and how to start it; the checks that need the Engine skip, pointing at it, instead
    of repeating a fix four times (issue 16)."""
    p = no_engine(tmp_path)
    engine = run_check(BY_ID["docker-engine"], p)
    assert engine.status is Status.CRITICAL and ACTION.search(engine.hint)
    for check_id in ENGINE_DEPENDENTS:
        result = run_check(BY_ID[check_id], p)
        assert (result.status, result.summary, result.hint) == (
            Status.SKIPPED, "the Docker Engine does not answer (see docker-engine)", ""), check_id


def down_on_this_machine(tmp_path: Path, daemon_json: str | None, *, euid: int = 0, platform_name="healthy-p5-h100x8",
                         said: str = "no socket there (dockerd is not running)"):
    """The running system (this machine) as doctor sees it with its Engine down (seeded: this machine's own
    dockerd is not the subject) and daemon.json at a path of the test's (the platform profile names it)."""
    import tempfile

    from gpuprep.engine.dockerd import EngineDown

    path = tmp_path / "daemon.json"
    if daemon_json is not None:
        path.write_text(daemon_json)
    where = Path(tempfile.mkdtemp(dir=tmp_path))
    platform = dataclasses.replace(detect(Host(tree(where, platform_name))), daemon_json=str(path))
    down = EngineDown("unix:///var/run/docker.sock", said, "")
    return probes("/", euid=euid, platform=platform, docker_info=down, engine_process=None), path


def test_a_daemon_json_dockerd_cannot_read_is_named_once_and_fixed_before_starting_it(tmp_path, monkeypatch):
    """A trailing comma stops dockerd; `systemctl start docker` cannot work until the file is fixed: docker-engine
    follows from docker-daemon-json, which names the file, line and column; its fixes come first, then the start.
    On one screen the parser's words and each fix appear once (issue 26: the text came four times)."""
    import io

    from gpuprep.report import DoctorReport, render_doctor_text

    p, path = down_on_this_machine(tmp_path, '{\n  "bridge": "none",\n}\n')
    engine, daemon = run_check(BY_ID["docker-engine"], p), run_check(BY_ID["docker-daemon-json"], p)
    comma = "a trailing comma at line 2 column 19"
    assert engine.status is daemon.status is Status.CRITICAL
    assert f"{path}: invalid JSON: {comma}" in daemon.summary and comma not in engine.summary + engine.hint
    assert engine.cause == "docker-daemon-json" and "daemon.json" in engine.summary
    argvs = [f.argv for f in engine.fixes]
    assert argvs[0] == ("python3", "-m", "json.tool", str(path)) == daemon.fixes[0].argv
    assert argvs.index(("systemctl", "start", "docker.service")) > 0
    monkeypatch.setenv("COLUMNS", "80")
    screen = io.StringIO()
    render_doctor_text(DoctorReport({"name": "x"}, [engine, daemon]), screen)
    text = screen.getvalue()
    assert text.count("trailing comma") == 1 and text.count("json.tool") == 1, text
    assert text.index("json.tool") < text.index("systemctl start docker.service")
    # With the file fixed, the one fix left is the start.
    path.write_text('{\n  "bridge": "none"\n}\n')
    p, _ = down_on_this_machine(tmp_path, None)
    engine = run_check(BY_ID["docker-engine"], p)
    assert "daemon.json" not in engine.hint and engine.fixes[0].argv == ("systemctl", "start", "docker.service")


@pytest.mark.parametrize("name, says, never", [
    ("al2023-ecs-gpu-2026", "systemctl start docker.service", "service docker"),
    ("healthy-g5-al2", "systemctl start docker.service", "service docker"),
    ("healthy-h200-ubuntu", "systemctl start docker.service", "service docker"),
])
def test_the_engine_start_is_this_platforms_own_command(tmp_path, name, says, never):
    p, _ = down_on_this_machine(tmp_path, None, platform_name=name)
    engine = run_check(BY_ID["docker-engine"], p)
    assert says in engine.hint and never not in engine.hint and "Amazon Linux 1" not in engine.hint


def test_amazon_linux_1_starts_docker_with_service():
    from gpuprep.engine.dockerd import engine_down_hint

    al1 = detect(Host(FIX / "distros/amzn-2018.03"))
    hint = engine_down_hint(Host("/", env={}), al1)
    assert hint.startswith("`service docker start`") and "systemctl" not in hint and "/var/log/docker" in hint


def test_not_root_a_denied_docker_socket_is_a_skip_that_says_needs_root(tmp_path):
    p, _ = down_on_this_machine(tmp_path, None, euid=1000, said="permission denied on its socket")
    engine = run_check(BY_ID["docker-engine"], p)
    assert engine.status is Status.SKIPPED and engine.summary.startswith("needs root (the Docker socket")
    assert "report it" not in engine.summary + engine.hint


def test_the_gate_journal_names_its_critical_checks():
    """Both shapes of doctor's text: a line per check, and a Nagios status line."""
    from gpuprep.ecs.gate import critical_checks

    lines = ("gpuprep doctor on Amazon Linux 2023\n"
             "  [CRIT]    docker-runtime-binary    the nvidia runtime's binary /usr/bin/x does not exist\n"
             "                                     fix: `dnf reinstall -y nvidia-container-toolkit-base`\n"
             "  [WARN]    gpu-persistence          persistence mode is off\n"
             "  [CRIT]    gpu-container            runtime-binary: the nvidia runtime's binary cannot be run\n")
    assert critical_checks(lines) == ["docker-runtime-binary", "gpu-container"]
    nagios = "GPUPREP CRITICAL - docker-runtime-binary, gpu-container | ok=24 warning=1 critical=2\n"
    assert critical_checks(nagios) == ["docker-runtime-binary", "gpu-container"]
    assert critical_checks("GPUPREP OK | ok=30\n  [ok]  docker-engine  Docker 25.0.6 answers\n") == []


def test_gpu_info_on_a_live_host_whose_nvml_does_not_answer_follows_gpu_nvml(tmp_path, monkeypatch):
    """It said "see the gpu checks" in prose; now it names gpu-nvml as its cause, whose fixes come first. SIMULATED:
    the running system is a tree (Host.live made true), NVML's failure seeded as nvidia-smi's exit 15."""
    p = gpu_info(tmp_path, info_json("580.178.04"), gpu_query.smi_failure(15, "Unable to determine the device handle"))
    monkeypatch.setattr(Host, "live", property(lambda self: True))
    result = run_check(BY_ID["ecs-gpu-info"], p)
    assert result.status is Status.UNKNOWN and result.cause == "gpu-nvml", result
