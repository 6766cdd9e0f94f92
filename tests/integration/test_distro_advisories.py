"""doctor's distro-advisories: pending security advisories for the stack's packages from dnf's cached updateinfo.

Real: rpmbuild-made packages, a repository made by createrepo_c whose updateinfo (shaped like Amazon Linux's ALAS
records) is added by modifyrepo_c, rpm installing into a --root tree, dnf's own `makecache` filling the tree's cache
(what the host's dnf does), and dnf reading that cache. Nothing about the advisories is simulated; the packages are
fixtures (Amazon Linux's repositories are not reachable here).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import FIXTURES, require, require_root
from contract import json_output
from rpmfixtures import AdvisorySpec, PkgSpec, build_repo, repo_file
from test_install_packages import GPUPREP

OLD_DOCKER = PkgSpec("docker", "25.0.6", "1.amzn2023.0.2")
NEW_DOCKER = PkgSpec("docker", "25.0.8", "1.amzn2023.0.5")
OLD_TOOLKIT = PkgSpec("nvidia-container-toolkit", "1.19.1", "1")
OTHER = PkgSpec("vim-minimal", "9.0.2153", "1.amzn2023")
NEW_OTHER = PkgSpec("vim-minimal", "9.1.0", "1.amzn2023")
ADVISORIES = [
    AdvisorySpec("ALAS2023-2026-1234", "Important", ("CVE-2026-0001", "CVE-2026-0002"), (NEW_DOCKER,)),
    # Not the stack's: doctor lists only what concerns the GPU container stack.
    AdvisorySpec("ALAS2023-2026-1300", "Moderate", ("CVE-2026-0100",), (NEW_OTHER,)),
]


def snapshot(root: Path) -> dict[str, tuple[int, float]]:
    """Every path's size and mtime, but sqlite's shared-memory index of the rpm database: any reader of the
    database (doctor's `rpm -q` for packages-installed, as before this check) maps and touches it."""
    out = {}
    for d, dirs, files in os.walk(root):
        for name in dirs + files:
            if name.endswith(".sqlite-shm"):
                continue
            p = os.path.join(d, name)
            st = os.lstat(p)
            out[p] = (st.st_size, st.st_mtime)
    return out


@pytest.fixture
def root(tmp_path: Path, request) -> Path:
    require("rpmbuild", "createrepo_c", "modifyrepo_c", "dnf", "rpm")
    require_root()
    cache = Path(request.config.cache.mkdir("rpmfixtures"))
    repo = build_repo([OLD_DOCKER, NEW_DOCKER, OLD_TOOLKIT, OTHER, NEW_OTHER], cache / "repo-alas",
                      cache=cache / "pkgs", advisories=ADVISORIES)
    r = tmp_path / "root"
    (r / "etc/yum.repos.d").mkdir(parents=True)
    shutil.copy(FIXTURES / "distros/amzn-2023/etc/os-release", r / "etc/os-release")
    (r / "etc/yum.repos.d/amazonlinux.repo").write_text(repo_file({"amazonlinux": repo}))
    rpms = [str(repo / p.filename) for p in (OLD_DOCKER, OLD_TOOLKIT, OTHER)]
    subprocess.run(["rpm", "--root", str(r), "-i", "--nodeps", *rpms], check=True, capture_output=True, timeout=120)
    return r


def makecache(root: Path) -> None:
    """What the host's own dnf does (a timer, cloud-init, an admin): doctor never does it."""
    subprocess.run(["dnf", "-q", "--disableplugin=local", f"--installroot={root}",
                    f"--setopt=reposdir={root}/etc/yum.repos.d", "--releasever=2023", "makecache"],
                   check=True, capture_output=True, timeout=120)


def doctor(root: Path) -> dict:
    done = subprocess.run([*GPUPREP, "--root", str(root), "--json", "doctor", "--no-container"], capture_output=True,
                          text=True, timeout=180, env={k: v for k, v in os.environ.items() if k != "DOCKER_HOST"})
    return {c["id"]: c for c in json_output(done.stdout)["checks"]}


def test_pending_advisories_for_the_stack_are_listed_from_the_cache_and_nothing_is_written(root: Path) -> None:
    makecache(root)
    before = snapshot(root)
    c = doctor(root)["distro-advisories"]
    assert snapshot(root) == before, "doctor wrote into the tree"
    assert c["status"] == "warning", c
    assert "ALAS2023-2026-1234 (Important, CVE-2026-0001, CVE-2026-0002): docker-25.0.8-1.amzn2023.0.5" in c["summary"]
    assert "ALAS2023-2026-1300" not in c["summary"]  # vim is not the stack's
    assert [a["id"] for a in c["data"]["advisories"]] == ["ALAS2023-2026-1234"]
    assert [f["argv"] for f in c["fixes"]] == [["chroot", str(root), "dnf", "upgrade", "-y",
                                                "--advisory=ALAS2023-2026-1234"]]  # no lock holds docker


def test_without_a_cache_nothing_is_fetched_and_the_check_says_why(root: Path) -> None:
    c = doctor(root)["distro-advisories"]
    assert c["status"] == "skipped" and "dnf makecache" in c["summary"], c
    assert not (root / "var/cache/dnf").exists()


def test_the_hint_clears_the_finding(root: Path) -> None:
    """The fix's `dnf upgrade -y --advisory=ID`, run the way it runs inside the image (here: dnf acting on the tree
    through --installroot, the tree having no dnf of its own to chroot into); then the advisory is no longer
    pending."""
    makecache(root)
    (fix,) = doctor(root)["distro-advisories"]["fixes"]
    chroot, image, argv = fix["argv"][0], fix["argv"][1], fix["argv"][2:]
    assert (chroot, image, argv[:3]) == ("chroot", str(root), ["dnf", "upgrade", "-y"])
    subprocess.run([argv[0], "-q", "--disableplugin=local", f"--installroot={root}",
                    f"--setopt=reposdir={root}/etc/yum.repos.d", "--releasever=2023", *argv[1:]],
                   check=True, capture_output=True, timeout=180)
    c = doctor(root)["distro-advisories"]
    assert c["status"] == "ok" and "no pending security advisory" in c["summary"], c
