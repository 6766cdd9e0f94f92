"""The toolkit's security floor through install's package steps, with real dnf, rpm and libsolv.

Real: rpmbuild-made repositories (createrepo_c), dnf acting on an installroot, the versionlock plugin's list.
The NVIDIA packages are fixture RPMs shaped like NVIDIA's (stand-ins: the real ones are not reachable here) at
the versions the bulletins name (gpuprep/knowledge/data/toolkit-security.json): every toolkit up to 1.19.0 is
affected by CVE-2026-24260 (NVIDIA bulletin 5850), 1.19.1 is not.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import FIXTURES, REPO, require, require_root
from contract import json_output
from rpmfixtures import build_repo
from test_install_packages import (
    AL2023_SPECS,
    GPUPREP,
    VERSIONLOCK_PLUGIN,
    gpuprep,
    repo_file,
    rpm_query_root,
    toolkit,
)

BASE = [s for s in AL2023_SPECS if not s.name.startswith(("nvidia", "libnvidia"))]


def make_root(tmp_path: Path, request, specs, name: str) -> Path:
    require("rpmbuild", "createrepo_c", "dnf", "rpm")
    require_root()
    cache = Path(request.config.cache.mkdir("rpmfixtures"))
    repo = build_repo(specs, cache / name, cache=cache / "pkgs")
    r = tmp_path / "root"
    (r / "etc" / "yum.repos.d").mkdir(parents=True)
    shutil.copy(FIXTURES / "distros" / "amzn-2023" / "etc" / "os-release", r / "etc" / "os-release")
    (r / "etc" / "yum.repos.d" / "fixture.repo").write_text(repo_file({"fixture": repo}))
    return r


@pytest.fixture
def only_vulnerable(tmp_path, request) -> Path:
    assert VERSIONLOCK_PLUGIN in BASE
    return make_root(tmp_path, request, [*BASE, *toolkit("1.18.2"), *toolkit("1.19.0")], "repo-floor-5850")


def test_only_vulnerable_toolkits_offered_gives_no_selection_naming_the_cve(only_vulnerable: Path) -> None:
    """A repository offering 1.18.x and 1.19.0 only: bulletin 5850 affects every one of them."""
    for args in (("--dry-run",), ()):
        out = gpuprep(only_vulnerable, *args, json_out=True)
        assert out.returncode == 1, out.stderr
        report = json_output(out.stdout)
        assert "CVE-2026-24260" in report["error"] and "below the security floor 1.19.1" in report["error"]
        assert report["no_solution"]["cves"] == ["CVE-2026-24260"]
        step = next(s for s in report["steps"] if s["id"] == "packages")
        assert step["status"] == "failed" and step["data"]["cves"] == report["no_solution"]["cves"]
        assert "--allow-vulnerable" in step["hint"]
        assert rpm_query_root(only_vulnerable, ["nvidia-container-toolkit"])["nvidia-container-toolkit"] is None


def test_allow_vulnerable_selects_the_newest_offered_and_the_plan_names_the_cve(only_vulnerable: Path) -> None:
    out = gpuprep(only_vulnerable, "--allow-vulnerable", json_out=True)
    assert out.returncode == 0, out.stderr
    report = json_output(out.stdout)
    assert report["selection"]["nvidia-container-toolkit"] == "nvidia-container-toolkit-1.19.0-1"
    data = next(s for s in report["steps"] if s["id"] == "packages")["data"]
    assert any("CVE-2026-24260" in v for v in data["security"]["vulnerable_selected"])


def test_a_versionlock_freezing_a_vulnerable_toolkit_is_reported_and_replaced(tmp_path, request) -> None:
    """The ECS AMI versionlocks nvidia*: a host built with 1.19.0 keeps it through every update. install says so
    and moves to the fixed version, locking that one instead."""
    r = make_root(tmp_path, request, [*BASE, *toolkit("1.18.2"), *toolkit("1.19.0")], "repo-floor-5850")
    first = gpuprep(r, "--allow-vulnerable", json_out=True)  # the host as it was built, when 1.19.0 was newest
    assert first.returncode == 0, first.stderr
    assert ":1.19.0-" in rpm_query_root(r, ["nvidia-container-toolkit"])["nvidia-container-toolkit"]
    cache = Path(request.config.cache.mkdir("rpmfixtures"))
    fixed = build_repo([*BASE, *toolkit("1.19.0"), *toolkit("1.19.1")], cache / "repo-floor-5850-fixed",
                       cache=cache / "pkgs")
    (r / "etc" / "yum.repos.d" / "fixture.repo").write_text(repo_file({"fixture": fixed}))  # NVIDIA released 1.19.1
    lock_list = r / "etc/dnf/plugins/versionlock.list"
    assert "nvidia-container-toolkit-0:1.19.0-1.*" in lock_list.read_text()

    plan = gpuprep(r, "--dry-run", json_out=True)
    assert plan.returncode == 0, plan.stderr
    step = next(s for s in json_output(plan.stdout)["steps"] if s["id"] == "packages")
    assert step["status"] == "planned" and "below the security floor" in step["summary"], step
    assert any("the versionlock froze a vulnerable toolkit" in line and "1.19.0" in line
               for line in step["data"]["lines"]), step["data"]
    assert any("CVE-2026-24260" in v for v in step["data"]["security"]["vulnerable_replaced"])

    done = gpuprep(r, json_out=True)
    assert done.returncode == 0, done.stderr
    assert ":1.19.1-" in rpm_query_root(r, ["nvidia-container-toolkit"])["nvidia-container-toolkit"]
    locks = lock_list.read_text()
    assert "nvidia-container-toolkit-0:1.19.1-1.*" in locks and "1.19.0" not in locks
    again = gpuprep(r, json_out=True)
    assert again.returncode == 0 and json_output(again.stdout)["status"] == "ok", again.stderr


def test_a_table_in_knowledge_d_raising_the_floor_changes_what_install_refuses_and_doctor_says(tmp_path, request):
    """No code change: a fleet drops a newer toolkit-security table into the image's /etc/gpuprep/knowledge.d.
    TEST FIXTURE: the table's bulletin 99999 / CVE-2099-0001 (floor 1.20.0) is made up. A world-writable copy of
    the same file is refused in one line and changes nothing."""
    r = make_root(tmp_path, request, [*BASE, *toolkit("1.19.0"), *toolkit("1.19.1")], "repo-floor-5850-fixed")
    assert gpuprep(r).returncode == 0  # 1.19.1: at the shipped floor
    table = json.loads((REPO / "gpuprep/knowledge/data/toolkit-security.json").read_text())
    table["as_of"] = "2026-12-08"
    table["rows"].append({"bulletin": 99999, "cves": ["CVE-2099-0001"], "fixed_in": "1.20.0",
                          "source": "test fixture, not an NVIDIA bulletin"})
    dropin = r / "etc/gpuprep/knowledge.d/toolkit-security.json"
    dropin.parent.mkdir(parents=True)
    dropin.write_text(json.dumps(table))
    dropin.chmod(0o644)

    plan = gpuprep(r, "--dry-run", json_out=True)
    assert plan.returncode == 1, plan.stdout
    report = json_output(plan.stdout)
    assert "below the security floor 1.20.0" in report["error"] and report["no_solution"]["cves"] == ["CVE-2099-0001"]
    doctor = subprocess.run([*GPUPREP, "--root", str(r), "--json", "doctor", "--no-container"], capture_output=True,
                            text=True, timeout=120, env={k: v for k, v in os.environ.items() if k != "DOCKER_HOST"})
    checks = {c["id"]: c for c in json_output(doctor.stdout)["checks"]}
    assert checks["toolkit-security"]["status"] == "critical"
    assert "CVE-2099-0001" in checks["toolkit-security"]["summary"]

    dropin.chmod(0o666)
    again = gpuprep(r, "--dry-run", json_out=True)
    assert again.returncode == 0, again.stderr
    refusals = [line for line in again.stderr.splitlines() if "toolkit-security.json: refused" in line]
    assert len(refusals) == 1 and "world-writable" in refusals[0]
    doctor = subprocess.run([*GPUPREP, "--root", str(r), "--json", "doctor", "--no-container"], capture_output=True,
                            text=True, timeout=120, env={k: v for k, v in os.environ.items() if k != "DOCKER_HOST"})
    checks = {c["id"]: c for c in json_output(doctor.stdout)["checks"]}
    assert checks["toolkit-security"]["status"] == "ok" and checks["knowledge-files"]["status"] == "warning"
