"""`gpuprep install --dry-run` is exact: with the repository the real run would add (NVIDIA's, or `--repo-file`) it
resolves and shows the pins the real run installs, says what dev-char-links would write, and fails as the real run
fails where that repository cannot be reached; and it still writes nothing (issue 26).

Measured before: the first dry run had no package pins ("resolve after NVIDIA's repository is added"),
`dev-char-links [ok]` where the real run writes the udev rule, and exit 0 `planned` when the repository it would add
was unreachable.

Real: dnf (with --installroot) and rpm against repositories that rpmbuild and createrepo_c built (tests/rpmfixtures.py),
the gpuprep CLI as a user runs it, a dry run then the real run of the same arguments, compared. SIMULATED: the
packages (shaped like AL2023's docker and ecs-init and NVIDIA's toolkit, as in test_install_packages.py); the root is
an Amazon Linux 2023 os-release, not a whole system. Deliberately unreachable (no network here is real):
NVIDIA's repository through a proxy nothing listens on (the root's dnf.conf `proxy=`), a `--repo-file` whose
baseurl is such a port.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from conftest import require, require_root
from contract import json_output
from rpmfixtures import al2023_root, build_repo, repo_file, rpm_query_root
from test_install_packages import AL2023_SPECS, GPUPREP, NAMES, toolkit, tree_digest

from gpuprep.toolkit.checks import DEV_CHAR_RULE
from gpuprep.toolkit.steps import DEV_CHAR_RULE_TEXT

STEPS = "preflight,repositories,packages,dev-char-links"
# The discard port: nothing listens on it here, so a connection is refused at once.
NOWHERE = "127.0.0.1:9"
BASE = [s for s in AL2023_SPECS if not s.name.startswith(("nvidia", "libnvidia"))]


def run(root: Path, *args: str) -> tuple[int, dict, str]:
    import os
    import subprocess

    proc = subprocess.run([*GPUPREP, "--root", str(root), "--json", "install", "--only", STEPS, *args],
                          capture_output=True, text=True, timeout=300, env={**os.environ, "NO_COLOR": "1"})
    try:
        return proc.returncode, json_output(proc.stdout), proc.stderr
    except json.JSONDecodeError:
        pytest.fail(f"no JSON (exit {proc.returncode}): {proc.stdout!r} {proc.stderr}")


def scratchless(commands: list[list[str]]) -> list[list[str]]:
    return [[re.sub(r"/tmp/gpuprep-[^/]+/", "/tmp/gpuprep-*/", word) for word in argv] for argv in commands]


def step(report: dict, step_id: str) -> dict:
    return next(s for s in report["steps"] if s["id"] == step_id)


@pytest.fixture
def cache(request) -> Path:
    require("rpmbuild", "createrepo_c", "dnf", "rpm")
    require_root()
    return Path(request.config.cache.mkdir("rpmfixtures"))


def base_root(tmp_path: Path, cache: Path) -> Path:
    """A root whose own repository offers docker, ecs-init and the versionlock plugin, and no NVIDIA runtime."""
    return al2023_root(tmp_path / "root", build_repo(BASE, cache / "repo-al2023-no-nvidia", cache=cache / "pkgs"))


def test_dry_run_with_repo_file_shows_the_pins_and_the_udev_rule_the_real_run_makes(tmp_path, cache):
    """`--repo-file` of a mirror with toolkit 1.16.2 (mode auto resolves to legacy before 1.18; below the security
    floor, hence `--allow-vulnerable`, as a fleet pinned to an old toolkit would): the dry run resolves through the file
    it would add, shows every pin and the rule dev-char-links writes, changes nothing; the real run of the same
    arguments installs exactly those pins and writes exactly that rule."""
    root = base_root(tmp_path, cache)
    mirror = build_repo(toolkit("1.16.2"), cache / "repo-toolkit-1.16.2", cache=cache / "pkgs")
    given = tmp_path / "nvidia-mirror.repo"
    given.write_text(repo_file({"nvidia-mirror": mirror}))
    before = tree_digest(root)

    args = ("--repo-file", str(given), "--allow-vulnerable")
    code, dry, stderr = run(root, *args, "--dry-run")
    assert code == 0, stderr
    assert tree_digest(root) == before  # the dry run wrote nothing, the repository file included
    packages = step(dry, "packages")
    assert packages["status"] == "planned", packages
    assert dry["selection"]["nvidia-container-toolkit"] == "nvidia-container-toolkit-1.16.2-1"
    assert dry["selection"]["docker"] == "docker-25.0.6-1.amzn2023.0.2"
    [install] = [c for c in packages["commands"] if "install" in c]
    assert "nvidia-container-toolkit-1.16.2-1.noarch" in install and "ecs-init-1.97.1-1.amzn2023.noarch" in install
    dev_char = step(dry, "dev-char-links")
    assert dev_char["status"] == "planned", dev_char  # was [ok]: "no /dev/char links needed"
    assert DEV_CHAR_RULE in dev_char["summary"] and "create-dev-char-symlinks" in dev_char["summary"]
    assert "nvidia-container-toolkit-1.16.2-1" in dev_char["summary"]
    assert f"+++ {DEV_CHAR_RULE}" in dev_char["diff"] or DEV_CHAR_RULE in dev_char["diff"]
    assert 'ACTION=="add", DEVPATH=="/bus/pci/drivers/nvidia"' in dev_char["diff"]

    code, real, stderr = run(root, *args)
    assert code == 0, stderr
    assert real["selection"] == dry["selection"]
    # The command the dry run showed is the one the real run ran (its scratch log and cache directory aside): the
    # target as the installroot, its own repositories, not the dry run's scratch copies.
    assert scratchless(step(real, "packages")["commands"]) == scratchless(packages["commands"])
    assert f"--installroot={root}" in install
    assert step(real, "dev-char-links")["status"] == "changed"
    assert step(real, "dev-char-links")["diff"] == dev_char["diff"]
    assert (root / DEV_CHAR_RULE.lstrip("/")).read_text() == DEV_CHAR_RULE_TEXT
    installed = {n: (v or "").replace("-0:", "-") for n, v in rpm_query_root(root, NAMES).items()}
    assert installed == {n: dry["selection"][n] for n in NAMES}  # installed: exactly the pins the dry run showed


def test_dry_run_fails_as_the_real_run_where_nvidias_repository_cannot_be_reached(tmp_path, cache):
    """No enabled repository offers the runtime, so install adds NVIDIA's repository; the root's dnf goes through a
    proxy nothing listens on (unreachable, deliberately). The dry run fails with the real run's failure (exit 1, the
    repository and URL named) instead of exit 0 `planned`, and writes nothing."""
    root = base_root(tmp_path, cache)
    (root / "etc/dnf").mkdir(parents=True)
    (root / "etc/dnf/dnf.conf").write_text(f"[main]\nproxy=http://{NOWHERE}\nskip_if_unavailable=False\n")
    before = tree_digest(root)
    code, dry, _ = run(root, "--dry-run")
    assert tree_digest(root) == before
    assert step(dry, "repositories")["status"] == "planned"
    assert code == 1 and dry["status"] == "failed", dry
    assert dry["error"].startswith("packages: dnf could not download the metadata of nvidia-container-toolkit ("
                                   "https://nvidia.github.io/libnvidia-container/stable/rpm/"), dry["error"]

    code_real, real, _ = run(root)
    assert code_real == code and real["error"] == dry["error"]
    assert not (root / "etc/yum.repos.d/nvidia-container-toolkit.repo").exists()  # the real run took it back


@pytest.mark.parametrize("skip_if_unavailable", [True, False], ids=["skip_if_unavailable", "strict"])
def test_dry_run_with_an_unreachable_repo_file_fails_as_the_real_run(tmp_path, cache, skip_if_unavailable):
    """`--repo-file` whose baseurl nothing answers: the dry run names the repository and the URL, exit 1, as the
    real run does (dnf skipping it or stopping), and writes nothing."""
    root = base_root(tmp_path, cache)
    (root / "etc/dnf").mkdir(parents=True)
    (root / "etc/dnf/dnf.conf").write_text(f"[main]\nskip_if_unavailable={skip_if_unavailable}\n")
    given = tmp_path / "nvidia.repo"
    url = f"http://{NOWHERE}/libnvidia-container/stable/rpm/x86_64"
    given.write_text(f"[nvidia-container-toolkit]\nname=nvidia-container-toolkit\nbaseurl={url}\nenabled=1\n"
                     "gpgcheck=0\n")
    before = tree_digest(root)
    code, dry, _ = run(root, "--repo-file", str(given), "--dry-run")
    assert tree_digest(root) == before
    assert code == 1 and dry["error"].startswith(
        f"packages: dnf could not download the metadata of nvidia-container-toolkit ({url}"), dry["error"]
    code_real, real, _ = run(root, "--repo-file", str(given))
    assert code_real == 1 and real["error"] == dry["error"]
    assert all(v is None for v in rpm_query_root(root, NAMES).values())
