"""gpuprep-cdi-generate.service under real systemd: installed by the cdi-spec step on a host whose toolkit has no
nvidia-cdi-refresh, it writes the CDI spec at every boot, before docker.service starts.

Real: systemd as PID 1 in a booted tree (systemd-nspawn), docker.service with Debian's Engine, the cdi-spec step
writing the unit and enabling it with ``systemctl --root`` on the powered-off tree, rpm's database in the tree, /run
as the tmpfs it is at boot. Stand-ins, said where used: nvidia-ctk is a script at the toolkit's path that writes a
small spec carrying the boot's id where ``--output`` says (NVIDIA's generator needs the GPU and driver this machine
lacks), and the toolkit's package is a fixture RPM at 1.17.8 (metadata only, installed with --justdb).
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from simfixtures import *  # noqa: F403  (pytest fixtures)

from gpuprep.host import Host
from gpuprep.options import InstallOptions
from gpuprep.platform import detect
from gpuprep.report import StepStatus
from gpuprep.runner.steps import Context, run_steps
from gpuprep.toolkit.boot_unit import UNIT_NAME
from gpuprep.toolkit.steps import CdiSpecStep

SPEC = "/var/run/cdi/nvidia.yaml"
STAND_IN_CTK = """#!/bin/sh
# STAND-IN for NVIDIA's nvidia-ctk: its real `cdi generate` needs the driver (it exits 1 with `failed to initialize
# NVML: ERROR_LIBRARY_NOT_FOUND` here, docs/testbed.md 12). This one's `cdi generate --output=F` writes a small spec.
out=""
for a in "$@"; do case "$a" in --output=*) out=${a#--output=} ;; esac; done
if [ "$1 $2" != "cdi generate" ] || [ -z "$out" ]; then echo "stand-in nvidia-ctk: unexpected: $*" >&2; exit 2; fi
mkdir -p "$(dirname "$out")"
spec='cdiVersion: 0.5.0\\nkind: nvidia.com/gpu\\ndevices:\\n- name: all\\n  containerEdits:\\n    env: [STAND_IN=1]'
printf "$spec\\n# boot %s\\n" "$(cat /proc/sys/kernel/random/boot_id)" > "$out"
echo "stand-in nvidia-ctk: wrote $out"
"""
CDI_CONFIG = """[nvidia-container-runtime]
mode = "cdi"
"""


def _install(root: Path) -> StepStatus:
    host = Host(root)
    report = run_steps(Context(host, detect(host), InstallOptions()), "install", [CdiSpecStep()])
    step = report.steps[0]
    assert step.status is not StepStatus.FAILED, (step.summary, step.hint)
    return step.status


def _monotonic(m, unit: str, prop: str) -> int:
    return int(m.run(["systemctl", "show", unit, f"--property={prop}", "--value"]).stdout.strip() or 0)


def test_the_spec_is_written_at_every_boot_before_docker(base_tree: Path, request):
    from nspawn import Machine
    from rpmfixtures import PkgSpec, build_rpm

    cache = Path(request.config.cache.mkdir("rpmfixtures"))
    rpm = build_rpm(PkgSpec("nvidia-container-toolkit-base", "1.17.8", "1"), cache / "cdi-boot-rpms",
                    cache=cache / "pkgs")
    m = Machine(base_tree, name="gpuprep-cdi-boot")
    try:
        m.mount()
        m.write("/usr/bin/nvidia-ctk", STAND_IN_CTK, mode=0o755)
        m.write("/etc/nvidia-container-runtime/config.toml", CDI_CONFIG)
        subprocess.run(["rpm", "--root", str(m.root), "--dbpath", "/var/lib/rpm", "-i", "--nodeps", "--justdb",
                        str(rpm)], check=True, capture_output=True, timeout=60)
        assert _install(m.root) is StepStatus.CHANGED
        assert _install(m.root) is StepStatus.OK  # a second run changes nothing

        m.boot()
        state = m.unit_state(UNIT_NAME)
        assert (state["ActiveState"], state["SubState"], state["Result"]) == ("active", "exited", "success"), state
        boot_id = m.run(["cat", "/proc/sys/kernel/random/boot_id"]).stdout.strip()
        assert f"# boot {boot_id}" in m.run(["cat", SPEC]).stdout
        assert f"stand-in nvidia-ctk: wrote {SPEC}" in m.journal(UNIT_NAME)
        # Before=docker.service: the spec was there when dockerd started.
        assert 0 < _monotonic(m, UNIT_NAME, "ExecMainExitTimestampMonotonic") <= \
            _monotonic(m, "docker.service", "ExecMainStartTimestampMonotonic")

        m.reboot()  # /run is a fresh tmpfs: the spec there now is this boot's
        new_id = m.run(["cat", "/proc/sys/kernel/random/boot_id"]).stdout.strip()
        assert new_id != boot_id and f"# boot {new_id}" in m.run(["cat", SPEC]).stdout
    finally:
        m.close()
