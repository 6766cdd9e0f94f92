"""The simulated instance's package repositories: real RPMs (rpmbuild + createrepo_c) shaped like the real ones.

SIMULATED because Amazon Linux's and NVIDIA's repositories cannot be reached here (docs/testbed.md 9).
Each package's real-world shape is cited beside it (docs/domain.md "Packages and their pins"). Version
numbers follow the real ones where a real one fits; where a scenario needs a conflict, the shape
is real and the number is made up, and the comment says so.

Two repositories, as on an AL2023 GPU instance:
- ``amazonlinux`` (configured in the tree like AL2023's own repo): system-release, docker, ecs-init.
- ``nvidia-container-toolkit`` (NVIDIA's; handed to ``gpuprep install --repo-file``, as an air-gapped
  build would): the toolkit family and the legacy nvidia-docker2 + nvidia-container-runtime.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from rpmfixtures import PkgSpec, build_repo
from testbed import (
    DEFAULT_GPUS,
    DRIVER_VERSION,
    ECS_SERVICE,
    toolkit_bin,
    write_fake_nvidia_smi,
    write_runtime_shim,
)

# Where the repositories live inside the simulated instance.
REPOS_DIR = "/srv/repos"
AMZN_REPO = f"{REPOS_DIR}/amazonlinux"
NVIDIA_REPO = f"{REPOS_DIR}/nvidia-container-toolkit"
NVIDIA_REPO_FILE = f"{REPOS_DIR}/nvidia-container-toolkit.repo"
# The Engine inside the tree is Debian's docker.io 20.10.24: every docker RPM offered records that
# version, so what rpm says and what `docker version` says agree whichever release is chosen.
ENGINE_VERSION = "20.10.24"
# The simulated EC2 instance identity: the test writes a new one to "launch a new instance".
INSTANCE_ID_FILE = "/etc/gpuprep-sim/instance-id"
RUNTIME_PATH = "/usr/bin/nvidia-container-runtime"
HOST_SMI = "/usr/bin/nvidia-smi"
RUNC = "/usr/sbin/runc"  # Debian's runc, which docker.io uses

# The one image the instance's Engine has (no registry here; sim.load_image imports it): the image
# gpu-check runs, and the image the stand-in agent container runs (see AGENT_SH).
INSTANCE_IMAGE = "gpuprep-sim/tiny:latest"
AGENT_CONTAINER = "ecs-agent"

# The stand-in ECS agent: a busybox `sh` script, run as the container `ecs-agent` by the stand-in
# ecs-init below. SIMULATED: no ECS control plane here. What it imitates:
# - The agent keeps its checkpoint in /data inside its container, which ecs-init bind-mounts from
#   /var/lib/ecs/data, so it lands in /var/lib/ecs/data/agent.db (BoltDB since agent 1.44.0; JSON here).
# - A checkpoint baked into an image by another instance makes the agent fail to register
#   (aws/amazon-ecs-agent 858, 2738): this one refuses to start on one and exits 5, its "terminal
#   error" code, which ecs-init passes on and ecs.service's RestartPreventExitStatus=5 does not restart.
# - Otherwise it writes its checkpoint and stays up until `docker stop` (SIGTERM) ends it.
# The instance identity the real agent reads from EC2 instance metadata comes in INSTANCE_ID.
AGENT_SH = r"""
db=/data/agent.db
if [ -e "$db" ]; then
  old=$(sed -n 's/.*"instance_id": *"\([^"]*\)".*/\1/p' "$db")
  if [ "$old" != "$INSTANCE_ID" ]; then
    echo "ecs-agent: found a checkpoint of instance $old in /var/lib/ecs/data/agent.db (this is $INSTANCE_ID):" \
      "refusing to start; remove /var/lib/ecs/data/* before imaging"
    exit 5
  fi
  echo "ecs-agent: resuming from checkpoint of $INSTANCE_ID"
else
  echo "ecs-agent: no checkpoint: registering $INSTANCE_ID as a new container instance"
fi
echo "{\"instance_id\": \"$INSTANCE_ID\", \"cluster\": \"$ECS_CLUSTER\"," \
  "\"gpu_support\": \"$ECS_ENABLE_GPU_SUPPORT\", \"started\": $(busybox date +%s)}" > "$db.tmp"
busybox mv "$db.tmp" "$db"
trap 'exit 0' TERM
sleep 2147483647 & wait $!
"""

# The stand-in for ecs-init's /usr/libexec/amazon-ecs-init (the real one is Go). SIMULATED.
ECS_INIT = r'''#!/usr/bin/python3
# SIMULATED amazon-ecs-init (tests only). What it imitates (aws/amazon-ecs-init):
# - pre-start: with ECS_ENABLE_GPU_SUPPORT=true (from /etc/ecs/ecs.config, which wins over
#   /var/lib/ecs/ecs.config) and /dev/nvidia* present, write /var/lib/ecs/gpu/nvidia-gpu-info.json
#   = {"DriverVersion", "GPUIDs"} (dir and file 0700); without /dev/nvidia* it silently skips,
#   as the real one does (a host whose driver failed registers with zero GPUs).
# - start: the agent runs as a Docker container named ecs-agent. ecs-init removes a leftover
#   ecs-agent container first, creates and starts a new one with /var/lib/ecs/data mounted as the
#   agent's /data, waits for it and exits with the agent's exit code (5: terminal, not restarted).
#   The real agent image is amazon/amazon-ecs-agent, loaded from the tarball ecs-init ships; here
#   the instance's one image runs the stand-in agent (AGENT_SH). No --rm: the real ecs-init leaves
#   the stopped container behind, which is why seal's `containers` step must remove it.
# - stop (ExecStop): `docker stop` the agent container; then start's wait returns and ecs-init exits.
import glob, json, os, subprocess, sys

INSTANCE_ID_FILE = "@INSTANCE_ID_FILE@"
IMAGE = "@IMAGE@"
AGENT = "@AGENT@"
AGENT_SH = @AGENT_SH@
DATA = "/var/lib/ecs/data"
GPU_INFO = "/var/lib/ecs/gpu/nvidia-gpu-info.json"

def config():
    values = {}
    for path in ("/var/lib/ecs/ecs.config", "/etc/ecs/ecs.config"):
        try:
            for line in open(path):
                line = line.strip()
                if "=" in line and not line.startswith("#"):
                    k, v = line.split("=", 1)
                    values[k.strip()] = v.strip().strip('"')
        except FileNotFoundError:
            pass
    return values

def pre_start():
    if config().get("ECS_ENABLE_GPU_SUPPORT", "").lower() != "true":
        return 0
    if not glob.glob("/dev/nvidia[0-9]*"):
        print("ecs-init: no /dev/nvidia* devices: GPU info not written", flush=True)
        return 0
    out = subprocess.run(["nvidia-smi", "--query-gpu=uuid,driver_version", "--format=csv,noheader"],
                         capture_output=True, text=True, timeout=30)
    if out.returncode != 0:
        print(f"ecs-init: nvidia-smi exited {out.returncode}: {out.stdout.strip()}", flush=True)
        return 1
    rows = [[c.strip() for c in line.split(",")] for line in out.stdout.splitlines() if line.strip()]
    os.makedirs(os.path.dirname(GPU_INFO), mode=0o700, exist_ok=True)
    fd = os.open(GPU_INFO, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o700)
    with os.fdopen(fd, "w") as f:
        json.dump({"DriverVersion": rows[0][1] if rows else "", "GPUIDs": [r[0] for r in rows]}, f)
    print(f"ecs-init: wrote {GPU_INFO} with {len(rows)} GPUs", flush=True)
    return 0

def start():
    subprocess.run(["docker", "rm", "-f", AGENT], capture_output=True, timeout=60)
    os.makedirs(DATA, exist_ok=True)
    cfg = config()
    env = {"INSTANCE_ID": open(INSTANCE_ID_FILE).read().strip(), "ECS_CLUSTER": cfg.get("ECS_CLUSTER", "default"),
           "ECS_ENABLE_GPU_SUPPORT": cfg.get("ECS_ENABLE_GPU_SUPPORT", "false")}
    argv = ["docker", "run", "--name", AGENT, "--network", "none", "-v", f"{DATA}:/data"]
    for k, v in env.items():
        argv += ["-e", f"{k}={v}"]
    print(f"ecs-init: starting the agent container {AGENT}", flush=True)
    return subprocess.run([*argv, IMAGE, "sh", "-c", AGENT_SH]).returncode

def stop():
    # No agent container (it exited, or never started) is no error: stopping is idempotent.
    subprocess.run(["docker", "stop", "-t", "30", AGENT], capture_output=True, timeout=90)
    return 0

if __name__ == "__main__":
    verb = sys.argv[1] if len(sys.argv) > 1 else ""
    sys.exit({"pre-start": pre_start, "start": start, "stop": stop}.get(verb, lambda: 0)())
'''.replace("@INSTANCE_ID_FILE@", INSTANCE_ID_FILE).replace("@IMAGE@", INSTANCE_IMAGE) \
    .replace("@AGENT@", AGENT_CONTAINER).replace("@AGENT_SH@", repr(AGENT_SH))

# nvidia-docker2 <= 2.0.x shipped this with the absolute path; 2.1.0+ the bare name.
NVIDIA_DOCKER2_DAEMON_JSON_OLD = {"runtimes": {"nvidia": {"path": "/usr/bin/nvidia-container-runtime",
                                                          "runtimeArgs": []}}}
NVIDIA_DOCKER2_DAEMON_JSON = {"runtimes": {"nvidia": {"path": "nvidia-container-runtime", "runtimeArgs": []}}}


def _shim_bytes() -> bytes:
    """The SIMULATED nvidia-container-runtime (docs/testbed.md 2), as installed inside the instance: NVIDIA's cannot
    run there, as these instances are legacy-mode hosts (toolkit ``auto`` before 1.18) and its legacy mode needs the
    driver (libnvidia-container's nvidia-container-cli loads libnvidia-ml.so.1, docs/testbed.md 12)."""
    with tempfile.TemporaryDirectory() as d:
        path = write_runtime_shim(Path(d) / "shim", Path(HOST_SMI), runc=RUNC)
        return path.read_bytes()


def fake_smi_bytes(gpus=DEFAULT_GPUS, exit_code: int = 0) -> bytes:
    """SIMULATED host nvidia-smi (the driver's; on a GPU AMI it comes with the driver, not an RPM)."""
    with tempfile.TemporaryDirectory() as d:
        return write_fake_nvidia_smi(Path(d) / "nvidia-smi", gpus, DRIVER_VERSION, exit_code).read_bytes()


# FIXTURE CHOICE: the runtime's config in legacy mode. The real 1.18+ RPMs ship `mode = "auto"` (jit-cdi on a driver
# host) with nvidia-cdi-refresh, whose `nvidia-ctk cdi generate` needs a driver these machines lack; the system
# tests were written for the legacy flow (/dev/char links) and keep it with a toolkit at the security floor, as a
# site that pins legacy mode does.
LEGACY_CONFIG = '[nvidia-container-runtime]\nmode = "legacy"\n'


def nvidia_ctk_bytes(version: str) -> bytes:
    """NVIDIA's real nvidia-ctk of ``version`` where tests/provision.sh unpacked that build (docs/testbed.md 12), else
    the SIMULATED one below (no build of that version: 1.16.2). In the instance the real one runs `--version` and
    `system create-dev-char-symlinks --create-all` (with the simulated driver's /proc/devices and PCI functions);
    `cdi generate` needs the driver (NVML), which no instance here has."""
    real = toolkit_bin(version) / "nvidia-ctk"
    return real.read_bytes() if real.is_file() else NVIDIA_CTK.replace("@VERSION@", version).encode()


def _toolkit_family(version: str, release: str = "1", *, legacy_config: bool = False) -> list[PkgSpec]:
    """nvidia-container-toolkit and the packages it is built with; all must be the same version.

    The toolkit RPM Provides nvidia-container-runtime and Obsoletes the old runtime packages
    (NVIDIA/nvidia-container-toolkit packaging/rpm/SPECS/nvidia-container-toolkit.spec). Its nvidia-ctk is NVIDIA's
    (``nvidia_ctk_bytes``); its nvidia-container-runtime stays the SIMULATED shim: the instances are legacy-mode hosts
    (toolkit ``auto`` before 1.18), and NVIDIA's runtime in legacy mode needs the driver (libnvidia-container loads
    libnvidia-ml.so.1), which no instance here has.
    """
    exact = f"{version}-{release}"
    shim = _shim_bytes()
    config = {"/etc/nvidia-container-runtime/config.toml": LEGACY_CONFIG} if legacy_config else {}
    return [
        PkgSpec("libnvidia-container1", version, release, arch="x86_64",
                files={f"/usr/share/doc/libnvidia-container1-{version}/README": "fixture\n"}),
        PkgSpec("libnvidia-container-tools", version, release, arch="x86_64",
                requires=[f"libnvidia-container1 = {exact}"],
                files={"/usr/bin/nvidia-container-cli": "#!/bin/sh\n# SIMULATED nvidia-container-cli\n"
                       f"echo 'cli-version: {version}'\n"}),
        PkgSpec("nvidia-container-toolkit-base", version, release, arch="x86_64",
                provides=[f"nvidia-container-runtime = {exact}"],
                obsoletes=["nvidia-container-runtime <= 3.5.0-1", "nvidia-container-runtime-hook"],
                files={RUNTIME_PATH: shim, **config,
                       "/usr/bin/nvidia-ctk": nvidia_ctk_bytes(version)},
                config_noreplace=list(config), modes={"/usr/bin/nvidia-ctk": 0o755}),
        PkgSpec("nvidia-container-toolkit", version, release, arch="x86_64",
                requires=[f"nvidia-container-toolkit-base = {exact}", f"libnvidia-container-tools = {exact}",
                          "libnvidia-container-tools < 2.0.0"],
                provides=["nvidia-container-runtime-hook"],
                files={"/usr/bin/nvidia-container-runtime-hook": "#!/bin/sh\n# SIMULATED hook\nexit 0\n"}),
    ]


# SIMULATED nvidia-ctk, for a toolkit version with no real build here (``nvidia_ctk_bytes``): its version, and
# `system create-dev-char-symlinks` doing
# what the real one does (NVIDIA/nvidia-container-toolkit cmd/nvidia-ctk/system/create-dev-char-symlinks): a
# /dev/char/MAJOR:MINOR link to every NVIDIA character device node. Anything else is refused, not faked.
NVIDIA_CTK = """#!/bin/sh
# SIMULATED nvidia-ctk (gpuprep tests: no NVIDIA toolkit here)
case "$1 $2" in
  "system create-dev-char-symlinks")
    mkdir -p /dev/char
    for node in /dev/nvidia*; do
      [ -c "$node" ] || continue
      set -- $(stat -c '%t %T' "$node")
      ln -sfn "../${node#/dev/}" "/dev/char/$((0x$1)):$((0x$2))"
    done
    exit 0;;
  "--version ")
    echo 'NVIDIA Container Toolkit CLI version @VERSION@'; exit 0;;
esac
echo "SIMULATED nvidia-ctk: $* is not simulated" >&2
exit 1
"""


def nvidia_packages() -> list[PkgSpec]:
    shim = _shim_bytes()
    return [
        *_toolkit_family("1.16.2"),
        *_toolkit_family("1.19.1", legacy_config=True),  # the security floor (NVIDIA bulletin 5850)
        # Legacy nvidia-container-runtime 3.x: the runtime binary, requiring the 1.x toolkit tools
        # (NVIDIA/nvidia-container-runtime, packaging: `Requires: libnvidia-container-tools < 2.0.0`).
        # The real 3.x stack also brought nvidia-container-runtime-hook (the 1.x nvidia-container-toolkit package it
        # required), which `docker run --gpus` needs on dockerd's PATH: shipped here with the runtime, SIMULATED.
        PkgSpec("nvidia-container-runtime", "3.4.0", "1", requires=[
            "libnvidia-container-tools >= 1.4.0", "libnvidia-container-tools < 2.0.0"],
            files={RUNTIME_PATH: shim,
                   "/usr/bin/nvidia-container-runtime-hook": "#!/bin/sh\n# SIMULATED hook\nexit 0\n"}),
        # nvidia-docker2 up to 2.4.0 shipped /etc/docker/daemon.json as a plain file: installing it
        # replaces the user's daemon.json. Builds pinned Docker exactly, release included (the real
        # 2.0.3 builds pinned `docker = 18.06.1ce-7.25.amzn1`); this one pins the first AL2023
        # release of Docker 20.10.24 offered below (number made up, shape real).
        PkgSpec("nvidia-docker2", "2.4.0", "1", requires=[
            f"docker = {ENGINE_VERSION}-1.amzn2023.0.1", "nvidia-container-runtime >= 3.4.0"],
            files={"/etc/docker/daemon.json": json.dumps(NVIDIA_DOCKER2_DAEMON_JSON_OLD, indent=4) + "\n",
                   "/usr/bin/nvidia-docker": "#!/bin/sh\nexec docker \"$@\"\n"}),
        # 2.5.0+ mark daemon.json %config (not noreplace): an existing unowned file is kept as
        # .rpmorig. This build pins a Docker release Amazon has since replaced (.0.2 is not
        # offered): Amazon's Docker updates broke exact pins until NVIDIA rebuilt
        # (NVIDIA/nvidia-docker issues 945, 991). So it is offered and cannot be installed.
        PkgSpec("nvidia-docker2", "2.5.0", "1", requires=[
            f"docker = {ENGINE_VERSION}-1.amzn2023.0.2", "nvidia-container-runtime >= 3.5.0"],
            files={"/etc/docker/daemon.json": json.dumps(NVIDIA_DOCKER2_DAEMON_JSON, indent=4) + "\n",
                   "/usr/bin/nvidia-docker": "#!/bin/sh\nexec docker \"$@\"\n"},
            config=["/etc/docker/daemon.json"]),
    ]


def amazonlinux_packages() -> list[PkgSpec]:
    ecs_files = {"/usr/libexec/amazon-ecs-init": ECS_INIT, "/usr/lib/systemd/system/ecs.service": ECS_SERVICE}
    docker = [
        # Amazon's docker package; two releases of one Engine version, as Amazon ships fixes
        # (18.06.1ce-7.25 -> -8.28 in docs/domain.md). The Engine itself is Debian's 20.10.24 in the tree:
        # this package records its version (and owns a marker, not the binaries).
        PkgSpec("docker", ENGINE_VERSION, rel, arch="x86_64", provides=["docker-engine"],
                files={"/usr/share/doc/docker-rpm/RELEASE": f"{ENGINE_VERSION}-{rel}\n"})
        for rel in ("1.amzn2023.0.1", "1.amzn2023.0.3")
    ]
    return [
        # AL2023's system-release: dnf reads $releasever from `system-release(releasever)`. It also
        # provides what the Debian tree's real files are (/bin/sh for scriptlets, python3), so
        # the rpm database agrees with the disk.
        PkgSpec("system-release", "2023.4.20240611", "0.amzn2023",
                provides=["system-release(releasever) = 2023", "/bin/sh", "/bin/bash", "/usr/bin/python3",
                          "python3", "systemd"],
                files={"/usr/share/doc/system-release/FIXTURE": "gpuprep simulated instance\n"}),
        *docker,
        # ecs-init's Docker floor rose over the years: `docker >= 17.06.2ce` for years, then
        # `docker >= 20.10.0` since 1.97.1 (aws/amazon-ecs-init spec). The newest here requires the
        # newer Docker release (number made up, shape real), so a legacy pin on the older
        # release forces an older ecs-init (scenario 2).
        PkgSpec("ecs-init", "1.97.1", "1.amzn2023", arch="x86_64", requires=["docker >= 20.10.0"],
                files=ecs_files, dirs=["/var/lib/ecs", "/var/lib/ecs/data", "/etc/ecs"]),
        PkgSpec("ecs-init", "1.99.0", "1.amzn2023", arch="x86_64",
                requires=[f"docker >= {ENGINE_VERSION}-1.amzn2023.0.3"],
                files=ecs_files, dirs=["/var/lib/ecs", "/var/lib/ecs/data", "/etc/ecs"]),
    ]


def build(dest: Path, cache: Path | None = None) -> dict[str, Path]:
    """Build both repositories under ``dest``; returns {repo id: directory}."""
    return {
        "amazonlinux": build_repo(amazonlinux_packages(), dest / "amazonlinux", cache=cache),
        "nvidia-container-toolkit": build_repo(nvidia_packages(), dest / "nvidia-container-toolkit", cache=cache),
    }


def repo_text(repo_id: str, inside_dir: str) -> str:
    return f"[{repo_id}]\nname={repo_id}\nbaseurl=file://{inside_dir}\nenabled=1\ngpgcheck=0\n"
