"""Issue 16's first bar: from `make dist`, the README's user-data lines, run on the simulated AL2023 instance,
install gpuprep on its python3 (3.9) and build a sealed image that boots into a working GPU host.

The script is read from README.md and run verbatim as cloud-init runs user-data (as root, by its #! line):
the user-data block with the README's air-gapped gpuprep line (`--repo-file`, `--image "$IMAGE"`: no
internet here) in place of the plain one. Real: the wheelhouse packaging/wheelhouse.py builds from this
checkout, bash, tar, CPython 3.9 (Debian bullseye's, as AL2023's python3), venv, pip offline with hashes,
systemd, docker.service, dnf/rpm. SIMULATED: S3 (`aws s3 cp` reads the tarball from /run), and the GPU,
driver, NVIDIA's and Amazon's packages, the ECS agent, EC2 identity (tests/system/simfixtures.py).
"""

from __future__ import annotations

import json
from pathlib import Path

from sim import IMAGE, readme_user_data
from simfixtures import *  # noqa: F403  (pytest fixtures)

from gpuprep import version as version_of
from gpuprep.bootcheck import UNIT_NAME

# sudo's secure_path on RHEL 8/9 and its rebuilds (docs/packaging.md): what `sudo gpuprep` searches.
RHEL_SECURE_PATH = "/sbin:/bin:/usr/sbin:/usr/bin"
# What the wheelhouse built from this checkout installs (gpuprep/version.py): its tag, or its commit.
VERSION = version_of.current_from(Path(__file__).resolve().parents[2])


def test_readme_user_data_installs_and_seals(instance):
    inst = instance
    script, offline = readme_user_data()
    assert any(line.startswith("aws s3 cp s3://") for line in script), script
    assert offline.startswith("gpuprep install --repo-file") and "seal" in offline, offline
    user_data = inst.user_data()
    assert user_data.splitlines()[-1] == offline  # verbatim: only the S3 fetch reads from /run instead
    proc = inst.run_user_data(user_data)
    out = proc.stdout + proc.stderr
    assert "gpuprep install.sh: /usr/sbin/gpuprep -> /opt/gpuprep/bin/gpuprep" in out, out
    # AL2023's python3 is 3.9; the venv is of it.
    assert inst.run(["python3", "--version"]).stdout.startswith("Python 3.9."), "the instance's python3"
    assert inst.run(["/opt/gpuprep/bin/python", "-c", "import sys; print(sys.version_info[:2])"]).stdout == "(3, 9)\n"
    # Found by root's PATH and by sudo's secure_path (no /usr/local in it).
    assert inst.run(["readlink", "/usr/sbin/gpuprep"]).stdout.strip() == "/opt/gpuprep/bin/gpuprep"
    assert inst.run(["gpuprep", "--version"], env={"PATH": RHEL_SECURE_PATH}).stdout == f"gpuprep {VERSION}\n"
    # Sealed: the stamp, ECS stopped, the kept image there, the boot gate running the linked gpuprep.
    stamp = json.loads(inst.path("/etc/gpuprep/seal.json").read_text())
    assert stamp, stamp
    assert inst.unit_state("ecs.service")["ActiveState"] == "inactive"
    assert IMAGE in inst.run(["docker", "images", "--format", "{{.Repository}}:{{.Tag}}"]).stdout
    unit = inst.path(f"/etc/systemd/system/{UNIT_NAME}").read_text()
    assert f"ExecStart=/usr/sbin/gpuprep doctor --boot --image {IMAGE}" in unit, unit

    # A new instance from the image: the gate passes on the installed gpuprep, ECS starts; the
    # downloaded wheelhouse (in /tmp, a tmpfs) is not in the image, the venv is.
    inst.launch_from_image()
    gate = inst.unit_state(UNIT_NAME)
    assert (gate["ActiveState"], gate["ExecMainStatus"]) == ("active", "0"), inst.journal(UNIT_NAME)
    assert inst.run(["systemctl", "is-active", "ecs.service"], check=False).stdout.strip() == "active"
    assert inst.run(["test", "-e", "/tmp/gpuprep-wheelhouse-py3.9"], check=False).returncode == 1
    assert inst.run(["gpuprep", "--version"]).stdout == f"gpuprep {VERSION}\n"
