"""doctor's package checks (packages-installed, packages-locked, ecs-docker-requires) on real installroots.

Real components: rpmbuild + createrepo_c build the fixture packages (tests/rpmfixtures.py), the machine's dnf
and rpm install them into a --root, and ``gpuprep --root R --json doctor --no-container`` reads the root's rpm
database and lock list, as it would a mounted Amazon Linux 2023 image. Simulated: the packages (shaped like
AL2023's docker and ecs-init, NVIDIA's toolkit and python3-dnf-plugin-versionlock, docs/domain.md) and the root
itself (only its os-release is Amazon Linux's). A broken pair (an ecs-init whose Requires the installed Docker
does not meet) cannot be made by dnf, which refuses it: it is installed with ``rpm -i --nodeps``, which is how
such hosts come about (a hand-installed RPM, a forced downgrade).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import FIXTURES, REPO, require, require_root
from contract import json_output
from rpmfixtures import PkgSpec, build_repo, repo_file

GPUPREP = [str(REPO / ".venv" / "bin" / "gpuprep")] if (REPO / ".venv" / "bin" / "gpuprep").exists() else ["gpuprep"]
OURS = ("packages-installed", "packages-locked", "ecs-docker-requires")


def toolkit(v: str) -> list[PkgSpec]:
    return [
        PkgSpec("nvidia-container-toolkit", v, "1", requires=[f"nvidia-container-toolkit-base = {v}-1",
                                                            f"libnvidia-container-tools >= {v}"],
                provides=["nvidia-container-runtime"], obsoletes=["nvidia-container-runtime < 3.14.0-1"]),
        PkgSpec("nvidia-container-toolkit-base", v, "1"),
        PkgSpec("libnvidia-container-tools", v, "1", requires=[f"libnvidia-container1 = {v}-1"]),
        PkgSpec("libnvidia-container1", v, "1"),
    ]


SPECS = [
    PkgSpec("docker", "20.10.25", "1.amzn2023.0.1"),
    PkgSpec("docker", "25.0.6", "1.amzn2023.0.2"),
    PkgSpec("ecs-init", "1.97.1", "1.amzn2023", requires=["docker >= 20.10.0"]),
    # Not offered to the resolver's liking here; installed by hand (rpm --nodeps) to make the broken pair.
    PkgSpec("ecs-init", "1.99.0", "1.amzn2023", requires=["docker >= 26.0.0"]),
    *toolkit("1.19.1"),
    # AL2023's versionlock command: python3-dnf-plugin-versionlock provides dnf-command(versionlock).
    PkgSpec("python3-dnf-plugin-versionlock", "4.3.0", "13.amzn2023.0.4", provides=["dnf-command(versionlock)"],
            files={"/etc/dnf/plugins/versionlock.conf": "[main]\nenabled = 1\n"
                                                        "locklist = /etc/dnf/plugins/versionlock.list\n",
                   "/etc/dnf/plugins/versionlock.list": ""},
            config_noreplace=["/etc/dnf/plugins/versionlock.conf", "/etc/dnf/plugins/versionlock.list"]),
]


@pytest.fixture(scope="module")
def repo(request) -> Path:
    """One repository for the module (built once; packages cached by content hash across runs)."""
    require("rpmbuild", "createrepo_c", "dnf", "rpm")
    require_root()
    cache = Path(request.config.cache.mkdir("rpmfixtures"))
    return build_repo(SPECS, cache / "repo-checks", cache=cache / "pkgs")


@pytest.fixture
def root(tmp_path: Path, repo: Path) -> Path:
    r = tmp_path / "root"
    (r / "etc" / "yum.repos.d").mkdir(parents=True)
    shutil.copy(FIXTURES / "distros" / "amzn-2023" / "etc" / "os-release", r / "etc" / "os-release")
    (r / "etc" / "yum.repos.d" / "fixture.repo").write_text(repo_file({"fixture": repo}))
    return r


def run(argv: list[str], **kw) -> subprocess.CompletedProcess:
    return subprocess.run(argv, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "NO_COLOR": "1"}, **kw)


def install(root: Path, *args: str) -> None:
    out = run([*GPUPREP, "--root", str(root), "install", "--only", "preflight,repositories,packages", *args])
    assert out.returncode == 0, out.stdout + out.stderr


def rpm_install_nodeps(root: Path, repo: Path, *files: str) -> None:
    run_ = run(["rpm", "--root", str(root), "-i", "--nodeps", *(str(repo / f) for f in files)])
    assert run_.returncode == 0, run_.stderr


def doctor(root: Path) -> tuple[int, dict]:
    out = run([*GPUPREP, "--root", str(root), "--json", "doctor", "--no-container"])
    report = json_output(out.stdout)
    assert report["command"] == "doctor"
    return out.returncode, {c["id"]: c for c in report["checks"] if c["id"] in OURS}


def test_installed_and_locked_root_is_ok(root: Path) -> None:
    install(root)
    _, checks = doctor(root)
    inst, locked, ecs = checks["packages-installed"], checks["packages-locked"], checks["ecs-docker-requires"]
    assert inst["status"] == "ok", inst
    assert inst["group"] == "packages" and "docker-25.0.6-1.amzn2023.0.2" in inst["summary"]
    assert inst["data"]["installed"]["nvidia-container-toolkit"] == "nvidia-container-toolkit-1.19.1-1"
    assert locked["status"] == "ok", locked
    assert locked["summary"] == "6 packages locked in /etc/dnf/plugins/versionlock.list"
    assert "docker-0:25.0.6-1.amzn2023.0.2.*" in locked["data"]["entries"] and locked["data"]["plugin"] is True
    assert ecs["status"] == "ok" and ecs["group"] == "ecs", ecs
    assert ecs["summary"] == "ecs-init-1.97.1-1.amzn2023 accepts docker-25.0.6-1.amzn2023.0.2"
    assert ecs["data"]["requires"] == ["docker >= 20.10.0"]


def test_unlocked_root_warns_with_the_exact_fix_and_the_fix_works(root: Path) -> None:
    """--no-versionlock leaves neither the plugin nor the entries: the fixes are gpuprep's packages step for the
    image (its dry run first), as argvs (issue 26 item 3: it was one shell line, dnf && printf >> LIST); running
    them as shown turns the check ok."""
    install(root, "--no-versionlock")
    assert not (root / "etc/dnf/plugins/versionlock.conf").exists()
    code, checks = doctor(root)
    locked = checks["packages-locked"]
    assert locked["status"] == "warning" and code >= 1
    assert "not version-locked: ecs-init-1.97.1-1.amzn2023, docker-25.0.6-1.amzn2023.0.2" in locked["summary"]
    assert "the versionlock plugin (dnf-command(versionlock)) is not installed" in locked["summary"]
    dry, real = (f["argv"] for f in locked["fixes"])
    assert dry == ["gpuprep", "--root", str(root), "install", "--only", "packages", "--dry-run"]
    assert real == dry[:-1]
    said = run([*GPUPREP, *dry[1:]])
    assert said.returncode == 0 and "lock 6 packages" in said.stdout, said.stdout + said.stderr
    fixed = run([*GPUPREP, *real[1:]])
    assert fixed.returncode == 0, fixed.stdout + fixed.stderr
    _, after = doctor(root)
    assert after["packages-locked"]["status"] == "ok", after["packages-locked"]


def test_locked_list_without_plugin_is_not_enforced(root: Path) -> None:
    """Entries in the list (written by hand, as image scripts do) but no plugin to read them: a warning, and the
    fix installs only the plugin."""
    install(root, "--no-versionlock")
    lock_list = root / "etc/dnf/plugins/versionlock.list"
    lock_list.parent.mkdir(parents=True)
    lock_list.write_text("".join(f"{line}\n" for line in (
        "ecs-init-0:1.97.1-1.amzn2023.*", "docker-0:25.0.6-1.amzn2023.0.2.*", "nvidia-container-toolkit-0:1.19.1-1.*",
        "nvidia-container-toolkit-base-0:1.19.1-1.*", "libnvidia-container-tools-0:1.19.1-1.*",
        "libnvidia-container1-0:1.19.1-1.*")))
    _, checks = doctor(root)
    locked = checks["packages-locked"]
    assert locked["status"] == "warning", locked
    assert locked["data"]["unlocked"] == [] and locked["data"]["plugin"] is False
    assert [f["argv"][-2:] for f in locked["fixes"]] == [["packages", "--dry-run"], ["--only", "packages"]]


def test_docker_that_ecs_init_rejects_is_critical(root: Path, repo: Path) -> None:
    rpm_install_nodeps(root, repo, "docker-20.10.25-1.amzn2023.0.1.noarch.rpm", "ecs-init-1.99.0-1.amzn2023.noarch.rpm",
                       "nvidia-container-toolkit-1.19.1-1.noarch.rpm")
    code, checks = doctor(root)
    ecs = checks["ecs-docker-requires"]
    assert ecs["status"] == "critical" and code == 2, ecs
    assert ecs["summary"] == ("ecs-init-1.99.0-1.amzn2023 requires docker >= 26.0.0; "
                              "installed: docker-20.10.25-1.amzn2023.0.1")
    assert [f["argv"] for f in ecs["fixes"]] == [["gpuprep", "--root", str(root), "install", "--dry-run"],
                                                 ["gpuprep", "--root", str(root), "install"]]


def test_no_ecs_init_skips_the_requires_check(root: Path, repo: Path) -> None:
    rpm_install_nodeps(root, repo, "docker-25.0.6-1.amzn2023.0.2.noarch.rpm",
                       "nvidia-container-toolkit-1.19.1-1.noarch.rpm")
    _, checks = doctor(root)
    assert checks["ecs-docker-requires"]["status"] == "skipped"
    assert checks["ecs-docker-requires"]["summary"] == "ecs-init is not installed"
    assert checks["packages-installed"]["status"] == "ok"
    assert checks["packages-installed"]["summary"] == "docker-25.0.6-1.amzn2023.0.2, nvidia-container-toolkit-1.19.1-1"


def test_nothing_installed(root: Path) -> None:
    _, checks = doctor(root)
    inst = checks["packages-installed"]
    assert inst["status"] == "warning" and inst["summary"] == "not installed: docker, an NVIDIA runtime package"
    # The same --root (issue 16); one value with ecs-init's fix, so the list shows it once.
    assert [f["argv"] for f in inst["fixes"]] == [["gpuprep", "--root", str(root), "install"]]
    assert checks["packages-locked"]["status"] == "skipped"
    assert checks["ecs-docker-requires"]["status"] == "skipped"
