"""The simulated GPU instance: the booted tree (nspawn.Machine) plus what a GPU AMI would have.

Before the first boot it gets the fixture repositories (fixture_repo), the driver's side that we
lack (a SIMULATED host nvidia-smi, a stand-in libcuda.so.1 and /dev/nvidia* nodes, made at every boot by
systemd-tmpfiles as the driver's udev rules would), and an EC2 instance identity (SIMULATED: no instance metadata here).
gpuprep is installed the way the README's user-data does it: those lines, read from README.md and run
verbatim, install the wheelhouse `make dist` built from this checkout into a venv of the instance's python3
(3.9, as AL2023's). SIMULATED: S3. The user-data's `aws s3 cp s3://... -` becomes a `cat` of the tarball,
put under /run in the instance (a tmpfs, as the download is not in the image either).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
import uuid
from collections.abc import Sequence
from pathlib import Path

import fake_cuda
import fixture_repo as fr
import image
from contract import json_output
from nspawn import Machine, wait
from testbed import DEFAULT_GPUS, DRIVER_VERSION, tiny_image

REPO = image.REPO
IMAGE = fr.INSTANCE_IMAGE  # no registry here: a busybox image imported into the instance's Engine
S3_INSIDE = "/run/gpuprep-s3"  # SIMULATED S3: where the user-data's `aws s3 cp` reads the tarball from
# The README's air-gapped line names the repo file by this path (`--repo-file`): the sim puts it there.
README_REPO_FILE = "/root/nvidia-container-toolkit.repo"


def readme_user_data() -> tuple[list[str], str]:
    """README.md's user-data script (the fenced block starting `#!/bin/bash`), as lines, and its air-gapped
    gpuprep line (the block starting `gpuprep install --repo-file`)."""
    blocks = re.findall(r"^```\n(.*?)^```", (REPO / "README.md").read_text(), re.S | re.M)
    script = next(b for b in blocks if b.startswith("#!/bin/bash\n")).splitlines()
    offline = next(b for b in blocks if b.startswith("gpuprep install --repo-file")).strip()
    return script, offline


def simulated_s3(line: str) -> str:
    """The user-data line with `aws s3 cp s3://BUCKET/NAME -` reading the tarball from S3_INSIDE instead."""
    new, n = re.subn(r"aws s3 cp s3://\S+/(\S+) -", rf"cat {S3_INSIDE}/\1", line)
    return new if n else line


# SIMULATED NVIDIA driver, "loaded" early at every boot (no GPU here). What the real one gives and
# gpuprep reads: PCI functions of vendor 0x10de, class 0x0302xx (3D controller), bound to the
# `nvidia` driver under /sys/bus/pci/devices; /proc/driver/nvidia/version naming the kernel module;
# /dev/nvidia[0-9]* (major 195) and /dev/nvidiactl. sysfs and /proc are the host's inside the
# container, so the script lays tmpfs over those two folders, in the container's mounts only. What NVIDIA's real
# nvidia-ctk reads besides (`system create-dev-char-symlinks --create-all`, docs/testbed.md 12): the driver's
# majors in /proc/devices (`195 nvidia`, `510 nvidia-uvm`: a copy of the host's with those lines, bound over it)
# and each PCI function's numa_node and resource (go-nvlib's nvpci reads both).
SIM_DRIVER = r"""#!/usr/bin/python3
import json, os, subprocess
cfg = json.load(open("/etc/gpuprep-sim/gpus.json"))
def tmpfs(path):
    subprocess.run(["mount", "-t", "tmpfs", "-o", "mode=0755", "gpuprep-sim", path], check=True)
tmpfs("/sys/bus/pci/devices")
for g in cfg["gpus"]:
    d = "/sys/bus/pci/devices/" + g["pci"][-12:].lower()
    os.makedirs(d)
    for name, value in (("vendor", "0x10de"), ("device", cfg["device_id"]), ("class", "0x030200"),
                        ("numa_node", "-1"), ("resource", "0x00000000e2000000 0x00000000e2ffffff 0x0000000000040200")):
        open(os.path.join(d, name), "w").write(value + "\n")
    os.symlink("../../../bus/pci/drivers/nvidia", os.path.join(d, "driver"))
devices = open("/proc/devices").read().replace("\nBlock devices:", "195 nvidia\n510 nvidia-uvm\n\nBlock devices:", 1)
os.makedirs("/run/gpuprep-sim", exist_ok=True)
open("/run/gpuprep-sim/proc-devices", "w").write(devices)
subprocess.run(["mount", "--bind", "/run/gpuprep-sim/proc-devices", "/proc/devices"], check=True)
tmpfs("/proc/driver")
os.makedirs("/proc/driver/nvidia")
open("/proc/driver/nvidia/version", "w").write(
    "NVRM version: NVIDIA UNIX Open Kernel Module for x86_64  %s  Release Build  (dvs-builder@U22-I3-AE18-09-3)"
    "  Wed Jul  9 16:53:37 UTC 2025\nGCC version:  gcc version 11.4.0\n" % cfg["driver_version"])
for g in cfg["gpus"]:
    path = "/dev/nvidia%d" % g["index"]
    if not os.path.exists(path):
        subprocess.run(["mknod", "-m", "0666", path, "c", "195", str(g["index"])], check=True)
if not os.path.exists("/dev/nvidiactl"):
    subprocess.run(["mknod", "-m", "0666", "/dev/nvidiactl", "c", "195", "255"], check=True)
# Not the driver's, but what a VM has and a container hides: the kernel log, where XIDs land.
if not os.path.exists("/dev/kmsg"):
    subprocess.run(["mknod", "-m", "0600", "/dev/kmsg", "c", "1", "11"], check=True)
# SIMULATED udev (no udevd runs in a systemd-nspawn container): the driver binding its PCI devices is an "add"
# event on /bus/pci/drivers/nvidia, so run what a rule matching that event asks, as udev would
# (dev-char-links' rule, bottlerocket-core-kit's 71-nvidia-dev-char.rules).
import glob, re, shlex
for rules in sorted(glob.glob("/etc/udev/rules.d/*.rules")):
    for line in open(rules):
        if 'ACTION=="add"' in line and 'DEVPATH=="/bus/pci/drivers/nvidia"' in line:
            for command in re.findall(r'RUN\+="([^"]+)"', line):
                subprocess.run(shlex.split(command), check=False)
"""
SIM_DRIVER_UNIT = """[Unit]
Description=SIMULATED NVIDIA driver (gpuprep tests: no GPU here)
DefaultDependencies=no
After=systemd-tmpfiles-setup-dev.service
Before=sysinit.target docker.service

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/usr/local/libexec/gpuprep-sim-driver

[Install]
WantedBy=sysinit.target
"""
H100_DEVICE_ID = "0x2330"  # H100 SXM5 80GB


class Instance(Machine):
    """An AL2023 GPU instance, simulated: boot it, run user-data, seal it, launch a new one from it."""

    def __init__(self, base: Path, repos: dict[str, Path], *, wheelhouse: Path, gpus: Sequence[dict] = DEFAULT_GPUS,
                 os_release: str = image.AL2023_OS_RELEASE, name: str = "gpuprep-sim") -> None:
        super().__init__(base, name=name)
        self.repos = repos
        self.wheelhouse = wheelhouse  # make dist's .tar.gz
        self.gpus = list(gpus)
        self.os_release = os_release
        self.instance_id = ""
        self.sealed: dict = {}  # build_image's seal JSON

    def prepare(self) -> None:
        """Lay out what the AMI and EC2 provide, before the first boot."""
        self.mount()
        for repo_id, src in self.repos.items():
            shutil.copytree(src, self.path(f"{fr.REPOS_DIR}/{repo_id}"), dirs_exist_ok=True)
        self.write("/etc/yum.repos.d/amazonlinux.repo", fr.repo_text("amazonlinux", fr.AMZN_REPO))
        self.write(fr.NVIDIA_REPO_FILE, fr.repo_text("nvidia-container-toolkit", fr.NVIDIA_REPO))
        self.write(README_REPO_FILE, fr.repo_text("nvidia-container-toolkit", fr.NVIDIA_REPO))
        if self.os_release != image.AL2023_OS_RELEASE:
            self.write("/etc/os-release", self.os_release)
            self.write("/usr/lib/os-release", self.os_release)
        # The driver's userland as gpuprep finds it by name: libnvidia-ml.so.1 -> .so.<version> in
        # /usr/lib64 (AL's dir). A placeholder, not loadable (and not on Debian's loader path), so
        # NVML calls fall back to nvidia-smi, which is the SIMULATED one below.
        lib = self.path(f"/usr/lib64/libnvidia-ml.so.{DRIVER_VERSION}")
        lib.parent.mkdir(parents=True, exist_ok=True)
        lib.write_text("SIMULATED libnvidia-ml placeholder: no NVIDIA driver here\n")
        (lib.parent / "libnvidia-ml.so.1").symlink_to(lib.name)
        # The driver's CUDA library, SIMULATED: the stand-in libcuda.so.1 (tests/fake_cuda.py: it runs the proof's
        # kernel arithmetic in C for these GPUs) where Debian's loader finds it, for doctor's gpu-cuda at boot.
        cuda_dir = self.path("/usr/lib/x86_64-linux-gnu/gpuprep-sim-cuda")
        fake_cuda.build(cuda_dir, self.gpus)
        self.path("/usr/lib/x86_64-linux-gnu/libcuda.so.1").symlink_to("gpuprep-sim-cuda/libcuda.so.1")
        self.path(fr.HOST_SMI).write_bytes(fr.fake_smi_bytes(self.gpus))
        self.path(fr.HOST_SMI).chmod(0o755)
        self.write("/etc/gpuprep-sim/gpus.json", json.dumps(
            {"gpus": self.gpus, "driver_version": DRIVER_VERSION, "device_id": H100_DEVICE_ID}, indent=2))
        self.write("/usr/local/libexec/gpuprep-sim-driver", SIM_DRIVER, mode=0o755)
        self.write("/etc/systemd/system/gpuprep-sim-driver.service", SIM_DRIVER_UNIT)
        wants = self.path("/etc/systemd/system/sysinit.target.wants/gpuprep-sim-driver.service")
        wants.parent.mkdir(parents=True, exist_ok=True)
        wants.symlink_to("/etc/systemd/system/gpuprep-sim-driver.service")
        self.new_instance()

    def new_instance(self) -> str:
        """Give the next boot a new EC2 instance id: a launch from the sealed image."""
        self.instance_id = f"i-{uuid.uuid4().hex[:17]}"
        self.write(fr.INSTANCE_ID_FILE, self.instance_id + "\n")
        return self.instance_id

    def first_boot(self) -> None:
        """Boot, register the base RPMs like an AL2023 AMI has them."""
        self.boot()
        rel = sorted(self.path(fr.AMZN_REPO).glob("system-release-*.rpm"))[0].name
        self.run(["rpm", "-i", f"{fr.AMZN_REPO}/{rel}"], timeout=60)
        self.load_image()

    def user_data(self, *, gpuprep: bool = True) -> str:
        """The README's user-data as this instance runs it: verbatim but for S3 (SIMULATED), and with the
        README's air-gapped gpuprep line (`--repo-file`, `--image "$IMAGE"`: no internet here) for the plain
        one; ``gpuprep=False``: only the lines that install gpuprep."""
        script, offline = readme_user_data()
        lines = [simulated_s3(line) for line in script]
        last = next(i for i, line in enumerate(lines) if line.startswith("gpuprep "))
        lines[last:] = [offline] if gpuprep else []
        return "\n".join(lines) + "\n"

    def run_user_data(self, script: str, *, check: bool = True, timeout: float = 900) -> subprocess.CompletedProcess:
        """Run ``script`` as cloud-init runs user-data: as root, by its #! line, after the tarball reached S3."""
        s3 = Path(f"/proc/{self.leader}/root{S3_INSIDE}")
        s3.mkdir(parents=True, exist_ok=True)
        shutil.copy2(self.wheelhouse, s3 / self.wheelhouse.name)
        self.write("/var/lib/cloud/instance/scripts/part-001", script, mode=0o700)
        return self.run(["/var/lib/cloud/instance/scripts/part-001"], check=check, timeout=timeout,
                        env={"IMAGE": IMAGE})

    def install_gpuprep(self) -> subprocess.CompletedProcess:
        """The README's user-data up to its gpuprep line: the wheelhouse's install.sh, offline, into /opt/gpuprep."""
        return self.run_user_data(self.user_data(gpuprep=False), timeout=300)

    def load_image(self) -> None:
        """Import the busybox image into the instance's own Engine (no registry reachable)."""
        import docker

        sock = f"/proc/{self.leader}/root/run/docker.sock"
        deadline = time.monotonic() + 30
        while not Path(sock).exists():
            if time.monotonic() > deadline:
                raise TimeoutError(f"gave up after 30s waiting for dockerd's socket {sock} in the instance")
            time.sleep(0.2)
        client = docker.DockerClient(base_url=f"unix://{sock}", version="auto", timeout=60)
        try:
            tiny_image(client, IMAGE)
        finally:
            client.close()

    def gpuprep(self, *args: str, check: bool = False, timeout: float = 600) -> subprocess.CompletedProcess:
        return self.run(["gpuprep", *args], check=check, timeout=timeout)

    def service_pid(self, unit: str) -> int:
        return int(self.unit_state(unit).get("MainPID", "0") or 0)

    # -- what a user runs --------------------------------------------------------------------
    def gpuprep_json(self, *args: str, timeout: float = 600) -> tuple[int, dict, str]:
        """`gpuprep --json ARGS` inside: (exit code, the one JSON object on stdout, stderr)."""
        proc = self.gpuprep("--json", *args, timeout=timeout)
        try:
            doc = json_output(proc.stdout)
        except json.JSONDecodeError:
            raise AssertionError(
                f"gpuprep --json {' '.join(args)} printed no JSON (exit {proc.returncode})\n"
                f"--- stdout ---\n{proc.stdout[-3000:]}\n--- stderr ---\n{proc.stderr[-3000:]}") from None
        return proc.returncode, doc, proc.stderr

    def install(self, *extra: str) -> tuple[int, dict, str]:
        # NVIDIA's repository comes as a .repo file, as in an air-gapped build (--repo-file).
        return self.gpuprep_json("install", "--repo-file", fr.NVIDIA_REPO_FILE, "--image", IMAGE, *extra)

    def seal(self, *extra: str) -> tuple[int, dict, str]:
        return self.gpuprep_json("seal", "--yes", "--keep-image", IMAGE, *extra)

    def doctor(self, *extra: str) -> tuple[int, dict, str]:
        return self.gpuprep_json("doctor", "--image", IMAGE, *extra)

    def build_image(self, *install_args: str) -> dict:
        """The image build as user-data runs it (the README's install lines, install, seal), with the builder
        trying the agent once before sealing, as builders do: that leaves a checkpoint seal must remove.
        Returns install's JSON."""
        self.install_gpuprep()
        rc, doc, err = self.install(*install_args)
        assert rc == 0 and doc["status"] == "changed", explain(doc) + err
        self.run(["systemctl", "start", "ecs.service"], timeout=60)
        self.wait_agent_registered()
        # ecs-init runs the agent as a container, as the real one does: seal must stop and remove it.
        running = self.run(["docker", "ps", "--format", "{{.Names}}"]).stdout.split()
        assert fr.AGENT_CONTAINER in running, running
        rc, sealed, err = self.seal()
        assert rc == 0 and sealed["status"] == "changed", explain(sealed) + err
        assert self.agent_db() is None, "seal left the agent's checkpoint"
        assert self.unit_state("ecs.service")["ActiveState"] == "inactive"
        assert fr.AGENT_CONTAINER not in self.containers(), "seal left the agent's container"
        self.sealed = sealed
        return doc

    def launch_from_image(self) -> None:
        """Power off; boot again as a new instance (a new EC2 instance id) launched from the image."""
        self.poweroff()
        self.new_instance()
        self.boot()

    def agent_db(self) -> dict | None:
        path = self.path("/var/lib/ecs/data/agent.db")
        return json.loads(path.read_text()) if path.exists() else None

    def containers(self) -> list[str]:
        """Names of the Engine's containers, running or not (`docker ps -a`)."""
        return self.run(["docker", "ps", "-a", "--format", "{{.Names}}"]).stdout.split()

    def wait_agent_registered(self, timeout: float = 30) -> dict:
        """The stand-in agent container writes its checkpoint once up (ecs.service is Type=simple: start
        returns before ecs-init has started the container)."""
        def registered():
            db = self.agent_db()
            return db if db and db.get("instance_id") == self.instance_id else None
        return wait(f"the ECS agent stand-in to checkpoint {self.instance_id}", timeout, registered)


def steps_by_id(doc: dict) -> dict[str, dict]:
    return {s["id"]: s for s in doc.get("steps", [])}


def checks_by_id(doc: dict) -> dict[str, dict]:
    return {c["id"]: c for c in doc.get("checks", [])}


def explain(doc: dict) -> str:
    """A failed run's JSON, short, for assertion messages."""
    lines = [f"status={doc.get('status')} error={doc.get('error', '')} hint={doc.get('hint', '')}"]
    for s in doc.get("steps", []) + doc.get("checks", []):
        lines.append(f"  {s['id']}: {s['status']}: {s['summary']} {s.get('hint', '')}")
    return "\n".join(lines)
