"""The toolkit's security floor through install's package steps, with real dnf, rpm and libsolv.

Real: rpmbuild-made repositories (createrepo_c), dnf acting on an installroot, the versionlock plugin's list.
The NVIDIA packages are fixture RPMs shaped like NVIDIA's (stand-ins: the real ones are not reachable here) at
the versions the bulletins name (gpuprep/toolkit/security.py): 1.17.7 is affected by CVE-2025-23266, 1.18.1
is not.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from conftest import FIXTURES, require, require_root
from rpmfixtures import build_repo
from test_install_packages import AL2023_SPECS, VERSIONLOCK_PLUGIN, gpuprep, repo_file, rpm_query_root, toolkit

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
    return make_root(tmp_path, request, [*BASE, *toolkit("1.16.2"), *toolkit("1.17.7")], "repo-floor-vulnerable")


def test_only_vulnerable_toolkits_offered_gives_no_selection_naming_the_cve(only_vulnerable: Path) -> None:
    for args in (("--dry-run",), ()):
        out = gpuprep(only_vulnerable, *args, json_out=True)
        assert out.returncode == 1, out.stderr
        report = json.loads(out.stdout)
        assert "CVE-2025-23266" in report["error"] and "below the security floor 1.17.8" in report["error"]
        assert "CVE-2025-23266" in report["no_solution"]["cves"]
        step = next(s for s in report["steps"] if s["id"] == "packages")
        assert step["status"] == "failed" and step["data"]["cves"] == report["no_solution"]["cves"]
        assert "--allow-vulnerable" in step["hint"]
        assert rpm_query_root(only_vulnerable, ["nvidia-container-toolkit"])["nvidia-container-toolkit"] is None


def test_allow_vulnerable_selects_the_newest_offered_and_the_plan_names_the_cve(only_vulnerable: Path) -> None:
    out = gpuprep(only_vulnerable, "--allow-vulnerable", json_out=True)
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert report["selection"]["nvidia-container-toolkit"] == "nvidia-container-toolkit-1.17.7-1"
    data = next(s for s in report["steps"] if s["id"] == "packages")["data"]
    assert any("CVE-2025-23266" in v for v in data["security"]["vulnerable_selected"])


def test_a_versionlock_freezing_a_vulnerable_toolkit_is_reported_and_replaced(tmp_path, request) -> None:
    """The ECS AMI versionlocks nvidia*: a host built with 1.17.7 keeps it through every update. install says so
    and moves to the fixed version, locking that one instead."""
    r = make_root(tmp_path, request, [*BASE, *toolkit("1.16.2"), *toolkit("1.17.7")], "repo-floor-vulnerable")
    first = gpuprep(r, "--allow-vulnerable", json_out=True)  # the host as it was built, when 1.17.7 was newest
    assert first.returncode == 0, first.stderr
    assert ":1.17.7-" in rpm_query_root(r, ["nvidia-container-toolkit"])["nvidia-container-toolkit"]
    cache = Path(request.config.cache.mkdir("rpmfixtures"))
    fixed = build_repo([*BASE, *toolkit("1.17.7"), *toolkit("1.18.1")], cache / "repo-floor-fixed",
                       cache=cache / "pkgs")
    (r / "etc" / "yum.repos.d" / "fixture.repo").write_text(repo_file({"fixture": fixed}))  # NVIDIA released 1.18.1
    lock_list = r / "etc/dnf/plugins/versionlock.list"
    assert "nvidia-container-toolkit-0:1.17.7-1.*" in lock_list.read_text()

    plan = gpuprep(r, "--dry-run", json_out=True)
    assert plan.returncode == 0, plan.stderr
    step = next(s for s in json.loads(plan.stdout)["steps"] if s["id"] == "packages")
    assert step["status"] == "planned" and "below the security floor" in step["summary"], step
    assert any("the versionlock froze a vulnerable toolkit" in line and "1.17.7" in line
               for line in step["data"]["lines"]), step["data"]
    assert any("CVE-2025-23266" in v for v in step["data"]["security"]["vulnerable_replaced"])

    done = gpuprep(r, json_out=True)
    assert done.returncode == 0, done.stderr
    assert ":1.18.1-" in rpm_query_root(r, ["nvidia-container-toolkit"])["nvidia-container-toolkit"]
    locks = lock_list.read_text()
    assert "nvidia-container-toolkit-0:1.18.1-1.*" in locks and "1.17.7" not in locks
    again = gpuprep(r, json_out=True)
    assert again.returncode == 0 and json.loads(again.stdout)["status"] == "ok", again.stderr
