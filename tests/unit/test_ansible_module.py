"""The Ansible module's mapping of gpuprep's report (integrations/ansible/plugins/modules/gpuprep.py).

Pure functions of a report: changed, failed, the message, the diff entries. The module run by real
ansible-core over ssh against booted hosts is tests/system/test_fleet_ansible.py.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from gpuprep.bootcheck import DEFAULT_PROGRAM

MODULE = Path(__file__).resolve().parents[2] / "integrations/ansible/plugins/modules/gpuprep.py"


@pytest.fixture(scope="module")
def mod():
    pytest.importorskip("ansible.module_utils.basic", reason="needs ansible-core (the test extra)")
    spec = importlib.util.spec_from_file_location("gpuprep_ansible_module", MODULE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def steps(*pairs, diff=""):
    return [{"id": i, "status": s, "summary": f"{i} {s}", **({"diff": diff} if diff and s != "ok" else {})}
            for i, s in pairs]


def test_install_changed_ok_failed(mod):
    changed = {"status": "changed", "steps": steps(("docker-runtime", "changed"))}
    assert mod.result_of("install", 0, changed, [])[:2] == (True, False)
    ok = {"status": "ok", "steps": steps(("docker-runtime", "ok"))}
    assert mod.result_of("install", 0, ok, [])[:2] == (False, False)
    failed = {"status": "failed", "error": "gpu-check: nvidia-smi exited 9", "hint": "load the driver",
              "steps": steps(("gpu-check", "failed"))}
    changed_, failed_, msg, _ = mod.result_of("install", 1, failed, [])
    assert failed_ and "gpu-check: nvidia-smi exited 9 (hint: load the driver)" in msg


def test_check_mode_counts_changes_not_proofs(mod):
    converged = {"status": "changed", "steps": steps(("docker-runtime", "ok"), ("gpu-check", "planned"))}
    assert mod.result_of("install", 0, converged, [], check_mode=True)[0] is False
    drifted = {"status": "changed", "steps": steps(("docker-runtime", "planned"), ("gpu-check", "planned"))}
    changed, _, _, extra = mod.result_of("install", 0, drifted, [], check_mode=True)
    assert changed and extra["planned"] == ["docker-runtime"]


def test_doctor_never_changes_and_fails_on_its_list(mod):
    report = {"status": "critical", "checks": [{"id": "gpu-nvml", "status": "critical"},
                                                {"id": "ecs-gpu-info", "status": "warning"},
                                                {"id": "gpu-pci", "status": "ok"}]}
    changed, failed, msg, extra = mod.result_of("doctor", 2, report, ["critical", "unknown"])
    assert (changed, failed) == (False, True) and extra["failing"] == ["gpu-nvml", "ecs-gpu-info"]
    assert msg == "gpuprep doctor: critical: gpu-nvml, ecs-gpu-info"
    assert mod.result_of("doctor", 2, report, [])[1] is False  # the fleet doctor playbook's setting


def test_diffs_are_printed_as_gpuprep_made_them(mod):
    report = {"steps": steps(("docker-runtime", "planned"), ("ecs-config", "ok"), diff="--- a\n+++ b\n")}
    assert mod.diffs_of(report) == [{"prepared": "docker-runtime: docker-runtime planned\n--- a\n+++ b\n"}]


def test_it_runs_the_gpuprep_the_wheelhouse_installs(mod):
    """/usr/sbin/gpuprep: where the wheelhouse's install.sh links it and what the boot gate's unit runs."""
    assert mod.DEFAULT_EXECUTABLE == DEFAULT_PROGRAM == "/usr/sbin/gpuprep"
    assert f"default: {DEFAULT_PROGRAM}\n" in mod.DOCUMENTATION
