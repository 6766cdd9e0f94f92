"""integrations/ansible as a collection (gpuprep.ecs_gpu): ansible-lint's production profile, a galaxy build, the role's
argument specification and the module's `choices` refusing a typo before anything runs.

Real: ansible-lint and ansible-core (the test extra), ansible-galaxy building the collection, ansible-playbook
running the role's argument validation on localhost (it fails before any task, so nothing is changed here). The
role and module against booted hosts over ssh are tests/system/test_fleet_ansible.py.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
import yaml
from conftest import REPO

COLLECTION = REPO / "integrations/ansible"
BIN = Path(sys.executable).parent


@pytest.fixture
def env(tmp_path) -> dict[str, str]:
    if not (BIN / "ansible-lint").exists() or not (BIN / "ansible-playbook").exists():
        pytest.fail("needs ansible-core and ansible-lint in the venv: `make venv` installs the test extra")
    link = tmp_path / "collections/ansible_collections/gpuprep/ecs_gpu"
    link.parent.mkdir(parents=True)
    link.symlink_to(COLLECTION)
    return {"PATH": f"{BIN}:/usr/bin:/bin", "HOME": str(tmp_path), "LANG": "C.UTF-8",
            "ANSIBLE_COLLECTIONS_PATH": str(tmp_path / "collections"), "ANSIBLE_LOCAL_TEMP": str(tmp_path / "tmp"),
            "ANSIBLE_NOCOLOR": "1", "NO_COLOR": "1", "PYTHONWARNINGS": "ignore"}


def test_ansible_lint_production_profile_passes(env):
    proc = subprocess.run([str(BIN / "ansible-lint"), "--offline", "--profile", "production", "--nocolor"],
                          cwd=COLLECTION, capture_output=True, text=True, timeout=600, env=env)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0 and "Profile 'production' was required, and it passed" in out, out[-4000:]
    assert not list(COLLECTION.glob(".ansible")), "ansible-lint left a cache in the checkout"


def test_the_collection_builds_with_its_module_and_role(env, tmp_path):
    proc = subprocess.run([str(BIN / "ansible-galaxy"), "collection", "build", str(COLLECTION), "--output-path",
                           str(tmp_path)], capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    galaxy = yaml.safe_load((COLLECTION / "galaxy.yml").read_text())
    built = tmp_path / f"gpuprep-ecs_gpu-{galaxy['version']}.tar.gz"
    with tarfile.open(built) as tf:
        names = set(tf.getnames())
    assert {"plugins/modules/gpuprep.py", "roles/gpuprep/tasks/main.yml", "roles/gpuprep/meta/argument_specs.yml",
            "playbooks/gpuprep.yml", "playbooks/fleet-doctor.yml", "meta/runtime.yml", "MANIFEST.json"} <= names, names


@pytest.mark.parametrize("bad, named", [
    ({"gpuprep_command": "reboot"}, "gpuprep_command"),
    ({"gpuprep_command": "doctor", "gpuprep_doctor_fail_on": ["critcal"]}, "gpuprep_doctor_fail_on"),
])
def test_the_role_refuses_a_typo_before_any_task(env, tmp_path, bad, named):
    """The argument specification fails the play at once, naming the variable (before issue 26 `fail_on` took
    any word and simply never matched)."""
    extra = {"gpuprep_hosts": "all", "gpuprep_become": False, "gpuprep_install_from_wheelhouse": False,
             "gpuprep_executable": str(tmp_path / "never-run"), **bad}
    proc = subprocess.run([str(BIN / "ansible-playbook"), "-i", "localhost,", "-c", "local",
                           str(COLLECTION / "playbooks/gpuprep.yml"), "-e", json.dumps(extra)],
                          capture_output=True, text=True, timeout=300, env=env)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 2 and "Validating arguments against arg spec" in out and named in out, out[-3000:]
    assert "Run gpuprep with its arguments" not in out  # no task ran


def test_the_module_refuses_a_fail_on_typo(env, tmp_path):
    """The module's own `choices`: run by ansible-core as a task would, on localhost."""
    args = {"command": "doctor", "executable": str(tmp_path / "never-run"), "fail_on": ["critcal"]}
    proc = subprocess.run([str(BIN / "ansible"), "localhost", "-i", "localhost,", "-c", "local", "-m",
                           "gpuprep.ecs_gpu.gpuprep", "-a", json.dumps(args)],
                          capture_output=True, text=True, timeout=300, env=env)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0 and "fail_on" in out and "critcal" in out, out[-3000:]
    assert not os.path.exists(tmp_path / "never-run")
