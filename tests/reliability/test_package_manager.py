"""The package manager's own side effects under --root (issue 23).

- A real install into a root leaves this machine's dnf and rpm state as it was (``/var/cache/dnf``,
  ``/var/lib/dnf``, ``/var/log/dnf*``, ``/var/lib/rpm``: Debian's dnf-plugins-core's generate_completion_cache
  wrote ``/var/cache/dnf/packages.db`` after every transaction), and leaves no dnf cache or logs in the root.
- A dry run writes nothing inside the root, and works on a read-only mount of it (``mount --bind`` then
  ``mount -o remount,ro,bind``), the rpm database's sqlite ``-shm``/``-wal`` files included.

Real: rpmbuild and createrepo_c build the repository (tests/rpmfixtures.py), this machine's dnf 4 and rpm install
into the root, the kernel's read-only bind mount. Simulated: the packages (fixtures shaped like Amazon Linux
2023's docker and ecs-init and NVIDIA's toolkit packages); the root is a tree with Amazon Linux 2023's os-release.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import reliability_kit as kit
from conftest import require, require_root
from contract import json_output
from rpmfixtures import PkgSpec, al2023_root, build_repo

_figure = kit.module_figure("package manager", "held")

SPECS = [
    PkgSpec("docker", "25.0.6", "1.amzn2023.0.2"),
    PkgSpec("ecs-init", "1.97.1", "1.amzn2023", requires=["docker >= 20.10.0"]),
    PkgSpec("nvidia-container-toolkit", "1.19.1", "1", requires=["nvidia-container-toolkit-base = 1.19.1-1"],
            provides=["nvidia-container-runtime"]),
    PkgSpec("nvidia-container-toolkit-base", "1.19.1", "1",
            files={"/usr/bin/nvidia-container-runtime": "#!/bin/sh\nexit 0\n"}),
    PkgSpec("libnvidia-container-tools", "1.19.1", "1", requires=["libnvidia-container1 = 1.19.1-1"]),
    PkgSpec("libnvidia-container1", "1.19.1", "1"),
    PkgSpec("python3-dnf-plugin-versionlock", "4.3.0", "13.amzn2023.0.4", provides=["dnf-command(versionlock)"],
            files={"/etc/dnf/plugins/versionlock.conf": "[main]\nenabled = 1\n"
                   "locklist = /etc/dnf/plugins/versionlock.list\n",
                   "/etc/dnf/plugins/versionlock.list": ""}),
]
STEPS = ("install", "--only", "preflight,repositories,packages")
# This machine's dnf and rpm state: what an install into a root must leave as it was.
HOST_STATE = [Path("/var/cache/dnf"), Path("/var/lib/dnf"), Path("/var/lib/rpm"), Path("/var/log/dnf.log"),
              Path("/var/log/dnf.librepo.log"), Path("/var/log/dnf.rpm.log"), Path("/var/log/hawkey.log")]


@pytest.fixture
def root(tmp_path: Path, request) -> Path:
    require("rpmbuild", "createrepo_c", "dnf", "rpm")
    require_root()
    cache = Path(request.config.cache.mkdir("rpmfixtures"))
    return al2023_root(tmp_path / "root", build_repo(SPECS, cache / "repo-reliability-pm", cache=cache / "pkgs"))


def _host_state() -> dict[str, tuple]:
    out: dict[str, tuple] = {}
    for p in HOST_STATE:
        if p.is_dir():
            out.update({f"{p}/{k}": v for k, v in kit.snapshot(p).items()})
        elif p.exists():
            out[str(p)] = (p.stat().st_size, kit._hash(str(p)))
    return out


def test_an_install_into_a_root_leaves_this_machines_dnf_and_rpm_state_and_no_cache_in_the_root(root: Path):
    before = _host_state()
    r = kit.gpuprep("--json", "--root", str(root), *STEPS, timeout=300)
    problems = [] if r.code == 0 else [f"exit {r.code}"]
    if r.code == 0:
        steps = {s["id"]: s for s in json_output(r.stdout)["steps"]}
        if steps["packages"]["status"] != "changed":
            problems.append(f"packages: {steps['packages']['status']}")
    changed = kit.diff(before, _host_state())
    if changed:
        problems.append(f"this machine's dnf/rpm state changed: {changed[:5]}")
    # dnf's cache, its logs, and the scratch directories that held them (dnf 4 puts the installroot in front of
    # a --setopt=cachedir: ROOT/tmp/gpuprep-*).
    left = [str(p.relative_to(root)) for d in ("var/cache/dnf", "var/log", "tmp") if (root / d).is_dir()
            for p in (root / d).rglob("*") if d != "var/log" or "dnf" in p.name or "hawkey" in p.name]
    if left:
        problems.append(f"dnf's cache or logs left in the root: {left[:5]}")
    kit.figure("package manager cases", not problems, 1, ["install-host-state"] if problems else [])
    assert not problems, f"{problems}\n{r}"


@pytest.fixture
def read_only(root: Path):
    """The root bind-mounted read-only at a second path (an image mounted read-only)."""
    ro = root.parent / "ro"
    ro.mkdir()
    subprocess.run(["mount", "--bind", str(root), str(ro)], check=True)
    try:
        subprocess.run(["mount", "-o", "remount,ro,bind", str(ro)], check=True)
        yield ro
    finally:
        subprocess.run(["umount", str(ro)], check=False)


def _installed(root: Path, *, image_db: bool, clean: bool = False) -> None:
    """The root after a real install: an rpm database (sqlite, with its -shm and -wal) and every package in place.
    ``image_db``: the database where Amazon Linux keeps it, /var/lib/rpm (Debian's rpm, which installed it, keeps
    its own at ~/.rpmdb)."""
    r = kit.gpuprep("--root", str(root), *STEPS, timeout=300)
    assert r.code == 0, r
    if image_db:
        (root / "var/lib").mkdir(parents=True, exist_ok=True)
        shutil.move(root / "root/.rpmdb", root / "var/lib/rpm")
    if clean:
        # As an image is left after a clean shutdown: sqlite folds the -wal into the database and removes
        # the -wal and -shm files when its last connection closes.
        import sqlite3

        db = sqlite3.connect(root / "var/lib/rpm/rpmdb.sqlite")
        assert db.execute("PRAGMA journal_mode").fetchone() == ("wal",)  # rpm's sqlite backend: WAL, as on AL2023
        db.close()
        assert not (root / "var/lib/rpm/rpmdb.sqlite-shm").exists()


def _said(r: kit.Run, root: Path) -> dict[str, tuple]:
    """Each step's status and summary, the root's path and scratch directories' names left out."""
    steps = json_output(r.stdout)["steps"]
    return {s["id"]: (s["status"], re.sub(r"gpuprep-\w{8}", "gpuprep-X", s["summary"].replace(str(root), "ROOT")))
            for s in steps}


@pytest.mark.parametrize("state", ["fresh", "installed", "image-db", "image-db-clean"])
def test_a_dry_run_writes_nothing_in_the_root_and_works_read_only(root: Path, read_only: Path, state: str):
    if state != "fresh":
        _installed(root, image_db=state.startswith("image-db"), clean=state == "image-db-clean")
    before = kit.snapshot(root)
    problems = []
    rw = kit.gpuprep("--json", "--root", str(root), *STEPS, "--dry-run", timeout=300)
    if rw.code != 0:
        problems.append(f"dry run exit {rw.code}: {kit.error_line(rw)}")
    changed = kit.diff(before, kit.snapshot(root))
    if changed:
        problems.append(f"the dry run wrote in the root: {changed[:5]}")
    ro = kit.gpuprep("--json", "--root", str(read_only), *STEPS, "--dry-run", timeout=300)
    if ro.code != 0:
        problems.append(f"read-only dry run exit {ro.code}: {kit.error_line(ro)}")
    elif rw.code == 0 and _said(rw, root) != _said(ro, read_only):
        problems.append(f"the read-only dry run says something else: {_said(rw, root)} != {_said(ro, read_only)}")
    kit.figure("package manager cases", not problems, 1, [f"dry-run-{state}"] if problems else [])
    assert not problems, f"{problems}\n{rw}\n{ro}"


def test_this_machine_has_the_plugins_the_install_case_guards_against():
    """The case above means something only where a plugin that writes outside the installroot is on."""
    plugins = Path("/usr/lib/python3/dist-packages/dnf-plugins")
    assert (plugins / "generate_completion_cache.py").is_file(), os.listdir(plugins)


# SIMULATED: a package manager that answers exit 0 with something other than what was asked (a wrapper script's
# banner, a plugin printing to stdout, a distro's alias). A stand-in script of that name first on PATH prints
# it for the query and hands every other call to the real program.
GARBAGE = {
    "repoquery": ("dnf", "repoquery", "Updating Subscription Management repositories."),
    "rpm-query": ("rpm", "--qf", "rpm wrapper 1.0: database checked, all good"),
}


def _stand_in(bin_dir: Path, name: str, when: str, says: str) -> None:
    real = shutil.which(name)
    script = bin_dir / name
    script.write_text(f'#!/bin/sh\n# SIMULATED {name} wrapper that prints garbage for one query (issue 23)\n'
                      f'for a in "$@"; do [ "$a" = "{when}" ] && {{ echo "{says}"; exit 0; }}; done\n'
                      f'exec {real} "$@"\n')
    script.chmod(0o755)


@pytest.mark.parametrize("case", sorted(GARBAGE))
def test_garbage_from_the_package_manager_is_bad_input_named_and_nothing_changes(root: Path, tmp_path: Path,
                                                                                 case: str):
    name, when, says = GARBAGE[case]
    if case == "rpm-query":
        _installed(root, image_db=False)  # rpm -q is asked only where the tree has a database
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    _stand_in(bin_dir, name, when, says)
    before = kit.without_lock(kit.snapshot(root))
    env = kit.env(PATH=f"{bin_dir}:{os.environ['PATH']}")
    proc = subprocess.run(kit.cli("--root", str(root), *STEPS), capture_output=True, text=True, env=env, cwd="/",
                          timeout=300)
    r = kit.Run(list(STEPS), proc.returncode, proc.stdout, proc.stderr, 0.0)
    problems = [] if r.code == 2 else [f"exit {r.code}, not 2"]
    problems += kit.error_problems(r)
    if says not in kit.error_line(r) or name not in kit.error_line(r):
        problems.append(f"the error line names neither {name} nor what it printed")
    changed = kit.diff(before, kit.without_lock(kit.snapshot(root), before))
    if changed:
        problems.append(f"changed: {changed[:5]}")
    kit.figure("package manager cases", not problems, 1, [f"garbage-{case}"] if problems else [])
    assert not problems, f"{problems}\n{r}"
