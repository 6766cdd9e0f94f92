"""``gpuprep doctor`` end to end, the way an admin runs it, against a healthy simulated GPU host and one broken one.

Real: the installed ``gpuprep`` console script in a fresh process; dockerd 20.10 on its own socket, reading the
daemon.json of the --root tree (``DOCKER_HOST`` points doctor at it); runc and containerd running the container
check's nvidia-smi in the locally built busybox image ``tiny:latest``; rpmbuild-built packages installed with the
machine's rpm into the root's own rpm database; ``systemctl --root`` enabling ecs.service there; the JSON, text and
Prometheus renderers; NVIDIA's real nvidia-container-runtime 1.20.0 as the nvidia runtime, in cdi mode with a spec
of the test's own (tests/testbed.py ``write_nvidia_runtime``) that binds that same nvidia-smi into the container, as
``nvidia-ctk cdi generate``'s spec binds the driver's.

SIMULATED, because this machine has no GPU, no driver and no Amazon Linux (docs/testbed.md 9): the p5-like host tree
(tests/hosttree.py: 8 H100 PCI functions, /dev/nvidia0-7, open kernel module and libnvidia-ml 580.178.04); the
host's nvidia-smi (``ROOT/usr/bin/nvidia-smi``, a busybox-sh script printing 8 GPUs whose PCI bus ids are the tree's
and whose UUIDs are fixed below); the GPU device nodes (character devices standing in for /dev/nvidia*) and the
packages (shaped like AL2023's docker and
ecs-init and NVIDIA's toolkit, as in test_checks_packages.py).

Why the UUIDs agree: with ``--root`` NVML is not consulted (it answers for the running system), so the host's
view of its GPUs is the root's nvidia-smi, and the runtime's CDI spec mounts that very file into the container. A
container that sees fewer GPUs than the host is test_docker_checks.py's case.

``build_live_host`` is shared with bench/bench_doctor.py (the 0.5 s "healthy simulated host" measurement).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests"))

import pytest  # noqa: E402
from contract import json_output  # noqa: E402
from hosttree import build_named, load_spec  # noqa: E402
from rpmfixtures import PkgSpec, build_repo  # noqa: E402
from testbed import (  # noqa: E402
    ENGINES,
    PrivateDockerd,
    tiny_image,
    with_gpus_hook,
    write_fake_nvidia_smi,
    write_nvidia_runtime,
)

HOST = "healthy-p5-h100x8"
DRIVER = "580.178.04"  # the tree's kernel module and libnvidia-ml version
GPUPREP = REPO / ".venv" / "bin" / "gpuprep"

# AL2023-shaped packages (docs/domain.md): ecs-init >= 1.97.1 requires docker >= 20.10.0; the toolkit's packages all
# share one version and it Provides nvidia-container-runtime; dnf's versionlock command comes from
# python3-dnf-plugin-versionlock, whose versionlock.conf names the lock list.
ECS_UNIT = ("[Unit]\nDescription=Amazon Elastic Container Service - container agent (test fixture)\n"
            "After=docker.service\nRequires=docker.service\n\n[Service]\nType=simple\nExecStart=/bin/true\n"
            "RestartPreventExitStatus=5\n\n[Install]\nWantedBy=multi-user.target\n")
PACKAGES = [
    PkgSpec("docker", "25.0.6", "1.amzn2023.0.2"),
    PkgSpec("ecs-init", "1.97.1", "1.amzn2023", requires=["docker >= 20.10.0"],
            files={"/usr/lib/systemd/system/ecs.service": ECS_UNIT}),
    PkgSpec("nvidia-container-toolkit", "1.19.1", "1", provides=["nvidia-container-runtime"],
            requires=["nvidia-container-toolkit-base = 1.19.1-1", "libnvidia-container-tools >= 1.19.1"]),
    PkgSpec("nvidia-container-toolkit-base", "1.19.1", "1"),
    PkgSpec("libnvidia-container-tools", "1.19.1", "1", requires=["libnvidia-container1 = 1.19.1-1"]),
    PkgSpec("libnvidia-container1", "1.19.1", "1"),
    PkgSpec("python3-dnf-plugin-versionlock", "4.3.0", "13.amzn2023.0.4", provides=["dnf-command(versionlock)"],
            files={"/etc/dnf/plugins/versionlock.conf": "[main]\nenabled = 1\n"
                                                        "locklist = /etc/dnf/plugins/versionlock.list\n"},
            config_noreplace=["/etc/dnf/plugins/versionlock.conf"]),
]
# What `dnf versionlock add` writes for each (NAME-EPOCH:VERSION-RELEASE.*), as gpuprep install would.
LOCKS = [f"{p.name}-{p.epoch or 0}:{p.version}-{p.release}.*" for p in PACKAGES
         if p.name != "python3-dnf-plugin-versionlock"]


def host_gpus() -> list[dict]:
    """The tree's 8 GPUs as the fake nvidia-smi prints them: same PCI bus ids (NVML's 8-digit domain form)."""
    spec = load_spec(HOST)
    return [{"index": i, "name": "NVIDIA H100 80GB HBM3", "uuid": f"GPU-5c0f{i:04x}-1a2b-3c4d-5e6f-70819{i:03x}a0b",
             "pci": "0000" + f.bus_id.upper()} for i, f in enumerate(spec.gpus)]


UUIDS = [g["uuid"] for g in host_gpus()]


@dataclass
class LiveHost:
    root: Path
    dockerd: PrivateDockerd
    runtime: Path  # the nvidia runtime daemon.json registers (NVIDIA's, through its wrapper)

    @property
    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k not in ("CI", "PYTHONPROFILEIMPORTTIME")}
        return {**env, "DOCKER_HOST": self.dockerd.url, "NO_COLOR": "1", "TERM": "dumb"}


def daemon_config(runtime: Path, default: bool = True) -> dict:
    config: dict = {"runtimes": {"nvidia": {"path": str(runtime), "runtimeArgs": []}}}
    return {**config, "default-runtime": "nvidia"} if default else config


def build_root(root: Path, pkg_cache: Path) -> Path:
    """The healthy p5 tree plus what an installed, configured AL2023 ECS GPU host has on disk."""
    build_named(HOST, root)
    write_fake_nvidia_smi(root / "usr/bin/nvidia-smi", gpus=host_gpus(), driver_version=DRIVER)
    repo = build_repo(PACKAGES, pkg_cache / "repo-doctor-live", cache=pkg_cache / "pkgs")
    rpms = [str(repo / p.filename) for p in PACKAGES]
    done = subprocess.run(["rpm", "--root", str(root), "-i", *rpms], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    (root / "etc/dnf/plugins/versionlock.list").write_text("".join(f"{e}\n" for e in LOCKS))
    done = subprocess.run(["systemctl", f"--root={root}", "enable", "ecs.service"], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    (root / "etc/ecs").mkdir(parents=True, exist_ok=True)
    (root / "etc/ecs/ecs.config").write_text("ECS_CLUSTER=gpu\nECS_ENABLE_GPU_SUPPORT=true\n")
    return root


def build_live_host(workdir: Path, pkg_cache: Path, *, default_runtime: bool = True) -> LiveHost:
    """A healthy simulated host with a started private dockerd; ``stop_live_host`` undoes it."""
    root = build_root(workdir / "root", pkg_cache)
    # The runtime's CDI spec mounts the root's own nvidia-smi: the container sees what the host sees.
    runtime = write_nvidia_runtime(workdir / "nvidia", root / "usr/bin/nvidia-smi", gpus=host_gpus()).path
    # The toolkit's package puts nvidia-container-runtime-hook on PATH, which `docker run --gpus` needs before 29.2:
    # a stand-in here (testbed.with_gpus_hook), so doctor's toolkit-gpu-routes proves that route too.
    dockerd = PrivateDockerd(config_path=root / "etc/docker/daemon.json",
                             config=daemon_config(runtime, default_runtime),
                             engine=with_gpus_hook(ENGINES["20.10"], workdir / "hook-bin"))
    try:
        dockerd.start()
        client = dockerd.client()
        try:
            tiny_image(client)
        finally:
            client.close()
    except BaseException:
        dockerd.cleanup()
        raise
    return LiveHost(root, dockerd, runtime)


def gpuprep_argv() -> list[str]:
    return [str(GPUPREP)] if GPUPREP.exists() else [sys.executable, "-m", "gpuprep"]


def doctor(host: LiveHost, *args: str, json_out: bool = True) -> subprocess.CompletedProcess:
    argv = [*gpuprep_argv(), "--root", str(host.root), *(["--json"] if json_out else []), "doctor",
            "--image", "tiny:latest", *args]
    return subprocess.run(argv, capture_output=True, text=True, timeout=180, env=host.env, cwd=REPO)


# -- fixtures -----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def pkg_cache(request) -> Path:
    from conftest import require, require_root, require_toolkit

    require_root()
    require_toolkit()
    require("rpmbuild", "createrepo_c", "rpm", "systemctl", "dockerd", "runc", "containerd", "busybox")
    return Path(request.config.cache.mkdir("rpmfixtures"))


@pytest.fixture(scope="module")
def healthy(pkg_cache, tmp_path_factory) -> Iterator[LiveHost]:
    host = build_live_host(tmp_path_factory.mktemp("live"), pkg_cache)
    yield host
    host.dockerd.cleanup()


@pytest.fixture(scope="module")
def healthy_run(healthy, tmp_path_factory) -> tuple[subprocess.CompletedProcess, dict, Path]:
    """One full doctor run (container check included) with --json and --prom."""
    prom = tmp_path_factory.mktemp("textfile") / "gpuprep.prom"
    proc = doctor(healthy, "--prom", str(prom))
    return proc, json_output(proc.stdout), prom


# -- the healthy host -------------------------------------------------------------------------
def test_healthy_host_exits_0_with_every_check_ok_or_skipped(healthy_run):
    proc, report, _ = healthy_run
    bad = {c["id"]: (c["status"], c["summary"]) for c in report["checks"] if c["status"] not in ("ok", "skipped")}
    assert not bad, bad
    assert proc.returncode == 0 and report["status"] == "ok"
    ok = {c["id"] for c in report["checks"] if c["status"] == "ok"}
    # What this host proves, beyond "nothing failed": each group's checks ran and passed.
    assert {"platform-os", "platform-root", "gpu-pci", "gpu-device-nodes", "gpu-kernel-module", "gpu-count",
            "gpu-driver-version", "docker-engine", "docker-daemon-json", "docker-nvidia-runtime",
            "docker-runtime-binary", "docker-default-runtime", "docker-runtime-once", "gpu-container", "ecs-init",
            "ecs-docker-requires", "ecs-gpu-support", "ecs-gpu-info", "ecs-service", "packages-installed",
            "packages-locked"} <= ok
    # Only what needs the running system (NVML, the kernel log, processes) or a sealed image is skipped, and what
    # this host has not got: EC2 instance metadata, dcgm-init, MPS, a published end of support for AL2023, a CDI
    # spec, DCGM, tables of its own in /etc/gpuprep/knowledge.d, a dnf cache; and /dev/char links, which toolkit
    # 1.19.1 in its default (auto: jit-cdi) mode does not need.
    absent = {"gpu-instance-count": "not an EC2 instance", "gpu-persistence-required": "not an EC2 instance",
              "ecs-gpu-health": "dcgm-init", "ecs-gpu-sharing-mps": "MPS is not installed",
              "platform-end-of-support": "no end of support announced for Amazon Linux 2023",
              "toolkit-dev-char": "the runtime runs in jit-cdi mode", "toolkit-cdi-specs": "no CDI spec",
              "dcgm-security": "DCGM (datacenter-gpu-manager) is not installed",
              "knowledge-files": "no table in /etc/gpuprep/knowledge.d",
              "distro-advisories": "no cached repository metadata with updateinfo",
              # issue 25: a p5 (NVSwitch on the bus) is neither NVLink5 nor GB200; tiny:latest has no python3
              "gpu-nvlink5": "not an NVLink5 type", "gpu-imex": "IMEX is for Grace-Blackwell",
              "container-cuda": "has no python3",
              # issue 28: no metadata service, no link files or VBIOS in this tree, no MPS, no spec, no refresh units
              "ec2-maintenance": "not an EC2 instance", "gpu-pcie-link": "no PCIe link width",
              "gpu-vbios": "fewer than two GPUs report a VBIOS", "gpu-mps-pipe": "no nvidia-mps.service",
              "toolkit-cdi-engine-reads": "no NVIDIA CDI spec", "toolkit-cdi-refresh": "ships no nvidia-cdi-refresh"}
    skipped = {c["id"]: c["summary"] for c in report["checks"] if c["status"] == "skipped"}
    for cid, why in skipped.items():
        assert "--root" in why or "sealed image" in why or absent.get(cid, "--root") in why, (cid, why)


# SSM Run Command keeps the first 24,000 characters of a command's stdout (integrations/aws/README.md).
SSM_STDOUT_LIMIT = 24_000


def test_json_is_compact_on_a_pipe_and_fits_ssm_on_an_8_gpu_host(healthy_run):
    """What the SSM document prints (`gpuprep --json doctor`, stdout not a terminal) on the 8-GPU p5 tree: one
    compact line that fits SSM's 24,000 characters. Indented it was 29,268 here and arrived cut off (issue 26)."""
    proc, report, _ = healthy_run
    assert len(report["checks"]) > 30 and len(report["platform"]) > 5  # the whole report, not a summary of it
    assert proc.stdout.endswith("}\n") and proc.stdout.count("\n") == 1, proc.stdout[:300]
    assert len(proc.stdout) <= SSM_STDOUT_LIMIT, len(proc.stdout)
    assert json.dumps(report, separators=(",", ":")) + "\n" == proc.stdout
    print(f"doctor --json on the 8-GPU tree: {len(proc.stdout)} characters compact, "
          f"{len(json.dumps(report, indent=2)) + 1} indented")


def test_container_sees_exactly_the_hosts_gpus(healthy_run, healthy):
    _, report, _ = healthy_run
    container = next(c for c in report["checks"] if c["id"] == "gpu-container")
    data = container["data"]
    assert data["image"] == "tiny:latest" and data["link"] == "ok"
    assert data["uuids"] == UUIDS and data["host_uuids"] == UUIDS  # the tree's 8 GPUs, in index order
    assert data["host_source"] == "nvidia-smi"  # --root: the root's nvidia-smi, not NVML
    assert [g["driver_version"] for g in data["gpus"]] == [DRIVER] * 8
    assert 0 < data["seconds"] < 10 and container["duration_ms"] >= data["seconds"] * 1000 * 0.9
    assert "UUIDs match the host's" in container["summary"]
    # The same GPUs in every other view of this host.
    gpu_pci = next(c for c in report["checks"] if c["id"] == "gpu-pci")
    assert gpu_pci["data"]["bus_ids"] == [g["pci"][4:].lower() for g in host_gpus()]


def test_json_shape_is_designs(healthy_run):
    """docs/contract.md: {"command", "version", "status", "platform", "checks": [{"id", "group", "status", "summary",
    "hint", "duration_ms", "data"}]} and nothing else on stdout."""
    proc, report, _ = healthy_run
    assert proc.stdout.lstrip().startswith("{") and proc.stdout.rstrip().endswith("}")
    assert list(report) == ["command", "version", "status", "platform", "checks"]
    assert report["command"] == "doctor" and report["status"] in ("ok", "warning", "critical", "unknown")
    assert report["platform"]["name"] == "Amazon Linux 2023" and report["platform"]["id"] == "amzn"
    from gpuprep.doctor import GROUPS, all_checks

    assert [c["id"] for c in report["checks"]] == [c.id for c in all_checks()]
    for c in report["checks"]:
        assert list(c) == ["id", "group", "status", "summary", "hint", "duration_ms", "data"], c
        assert c["group"] in GROUPS
        assert c["status"] in ("ok", "warning", "critical", "unknown", "skipped")
        assert isinstance(c["summary"], str) and c["summary"]
        assert isinstance(c["hint"], str) and isinstance(c["data"], dict)
        assert isinstance(c["duration_ms"], (int, float)) and c["duration_ms"] >= 0
    by_id = {c["id"]: c for c in report["checks"]}
    assert by_id["docker-engine"]["data"]["server_version"].startswith("20.10")
    assert by_id["packages-installed"]["data"]["installed"]["ecs-init"] == "ecs-init-1.97.1-1.amzn2023"


def test_prom_file_of_that_run(healthy_run):
    proc, report, prom = healthy_run
    assert [p.name for p in prom.parent.iterdir()] == ["gpuprep.prom"]  # renamed into place, no temp left
    text = prom.read_text()
    lines = text.splitlines()
    assert "gpuprep_doctor_status 0" in lines
    ran = [c for c in report["checks"] if c["status"] != "skipped"]
    statuses = [line for line in lines if line.startswith("gpuprep_check_status{")]
    assert statuses == [f'gpuprep_check_status{{check="{c["id"]}",group="{c["group"]}"}} 0' for c in ran]
    durations = {m.group(1): float(m.group(2)) for m in
                 re.finditer(r'^gpuprep_check_duration_seconds\{check="([^"]+)",group="[^"]+"\} (\S+)$', text, re.M)}
    assert set(durations) == {c["id"] for c in report["checks"]}
    for c in report["checks"]:
        assert durations[c["id"]] == pytest.approx(c["duration_ms"] / 1000, abs=0.001)
    for line in lines:  # node_exporter text format, and no timestamp (a third field) on any sample
        assert line.startswith(("# HELP gpuprep_", "# TYPE gpuprep_")) or re.fullmatch(
            r'gpuprep_[a-z_]+(\{[^}]*\})? [0-9.]+', line), line


def test_text_output_grouped_with_a_summary_line(healthy):
    """The verdict first (Nagios' one line), a line per healthy group, the recap last; -v lists every check."""
    proc = doctor(healthy, "--no-container", json_out=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    assert re.match(r"^GPUPREP OK - \d+ checks ok \| ok=\d+ warning=0 critical=0 unknown=0 skipped=\d+$", lines[0])
    assert lines[1] == "gpuprep doctor on Amazon Linux 2023"
    groups = [line.split()[0] for line in lines[2:-1] if line and not line.startswith(" ")]
    assert groups == ["platform", "gpu", "docker", "container", "ecs", "packages"]
    assert re.match(r"^OK: \d+ ok, \d+ skipped \(exit 0\)$", lines[-1]), lines[-1]
    assert "\x1b[" not in proc.stdout  # not a tty: plain text for logs
    assert proc.stderr == ""

    verbose = doctor(healthy, "-v", "--no-container", json_out=False)
    # One line per check, under its group: mark, id, finding.
    row = re.compile(r"^(?:\S+\s+|\s+)\[(ok|skip|WARN|CRIT|UNKN)\]\s+(\S+)\s+\S")
    rows = [m.group(2) for m in map(row.match, verbose.stdout.splitlines()) if m]
    from gpuprep.doctor import all_checks

    assert rows == [c.id for c in all_checks()]


# -- a broken host through the CLI --------------------------------------------------------------
def test_runtime_not_default_exit_code_and_fix(pkg_cache, tmp_path):
    """The seed's failure: nvidia registered but not the default runtime. A plain `docker run` (AWS Batch jobs,
    anything started without --runtime) gets no GPU: critical, and the text says the fix. Then the fix, done as
    the hint says (default-runtime in daemon.json, a reload: SIGHUP, docs/testbed.md 3), makes the same host exit 0."""
    import signal

    from testbed import wait_until

    host = build_live_host(tmp_path, pkg_cache, default_runtime=False)
    try:
        text = doctor(host, json_out=False)
        as_json = doctor(host)
        (host.root / "etc/docker/daemon.json").write_text(json.dumps(daemon_config(host.runtime)))
        os.kill(host.dockerd.current_pid(), signal.SIGHUP)
        client = host.dockerd.client()
        try:
            wait_until(lambda: client.info().get("DefaultRuntime") == "nvidia", what="dockerd to reload", timeout=20)
        finally:
            client.close()
        fixed = doctor(host)
    finally:
        host.dockerd.cleanup()
    assert text.returncode == 2 and as_json.returncode == 2
    checks = {c["id"]: c for c in json_output(as_json.stdout)["checks"]}
    assert checks["docker-default-runtime"]["status"] == "warning"
    assert checks["gpu-container"]["status"] == "critical"
    assert checks["gpu-container"]["data"]["link"] == "runtime-not-default"
    out = text.stdout
    assert out.splitlines()[0].startswith("GPUPREP CRITICAL - gpu-container, docker-default-runtime")
    assert re.search(r"^docker\s+\[WARN\]\s+docker-default-runtime\s+Docker's default runtime is runc, not nvidia",
                     out, re.M)
    assert re.search(r"^container\s+\[CRIT\]\s+gpu-container\s+runtime-not-default: nvidia is not Docker's default",
                     out, re.M)
    fixes = [line.strip() for line in out.splitlines() if line.strip().startswith("fix: ")]
    # One fix for both findings, said once: the same --root, and the runtime kept where dockerd has it (issue 16).
    assert fixes == [f"fix: `gpuprep --root {host.root} install --only docker-runtime,docker-reload --runtime-path "
                     f'{host.runtime}` (sets "default-runtime": "nvidia" in daemon.json and reloads dockerd)'], fixes
    assert out.splitlines()[-1].startswith("CRITICAL: ") and out.splitlines()[-1].endswith("(exit 2)")
    report = json_output(fixed.stdout)
    assert fixed.returncode == 0, [(c["id"], c["status"]) for c in report["checks"] if c["status"] != "ok"]


if __name__ == "__main__":  # build a host by hand: python tests/integration/test_doctor_live.py DIR
    target = Path(sys.argv[1])
    shutil.rmtree(target, ignore_errors=True)
    h = build_live_host(target, target / "cache")
    print(f"DOCKER_HOST={h.dockerd.url} {GPUPREP} --root {h.root} doctor --image tiny:latest"
          f"  (dockerd pid {h.dockerd.proc.pid})")
