"""gpuprep/version.py: the version from git tags, with real git on scratch repositories, and the fallbacks.

Real: git (init, commit, tag, describe), setup.py run by pip to build a wheel of a fresh clone (CI's case: a
clone has .git and tags, the wheel must carry the commit). Nothing simulated.
"""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import tempfile
import zipfile
from pathlib import Path

import distkit
import pytest

from gpuprep import version as version_of

REPO = Path(__file__).resolve().parents[2]
GIT_ENV = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.invalid", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@example.invalid", "GIT_CONFIG_GLOBAL": "/dev/null", "PATH": "/usr/bin:/bin"}


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, text=True,
                          env=GIT_ENV, timeout=60).stdout.strip()


def commit(repo: Path, name: str) -> str:
    (repo / name).write_text(name)
    git(repo, "add", name)
    git(repo, "commit", "-q", "-m", name)
    return git(repo, "rev-parse", "--short=12", "HEAD")


@pytest.fixture
def repo(tmp_path) -> Path:
    git(tmp_path, "init", "-q")
    return tmp_path


@pytest.mark.parametrize("describe,expected", [
    ("v0.2.0-0-g0123456789ab", "0.2.0"),
    ("v0.2.0-3-g0123456789ab", "0.2.0.post3+g0123456789ab"),
    ("v1.10.2-0-g0123456789ab-dirty", "1.10.2+dirty"),
    ("v1.10.2-12-g0123456789ab-dirty", "1.10.2.post12+g0123456789ab.dirty"),
])
def test_describe_becomes_pep_440(describe, expected):
    assert version_of.from_describe(describe) == expected


def test_a_tag_that_is_not_vxyz_is_refused():
    with pytest.raises(ValueError, match="not a `git describe --long`"):
        version_of.from_describe("release-2-3-gabc")


def test_untagged_then_tagged_then_after_the_tag(repo):
    first = commit(repo, "a")
    assert version_of.from_git(repo) == f"0.0.0+g{first}"
    (repo / "a").write_text("changed")
    assert version_of.from_git(repo) == f"0.0.0+g{first}.dirty"
    git(repo, "checkout", "-q", "--", "a")
    git(repo, "tag", "v0.2.0")
    git(repo, "tag", "not-a-release")  # only vX.Y.Z tags are releases
    assert version_of.from_git(repo) == "0.2.0"
    later = commit(repo, "b")
    assert version_of.from_git(repo) == f"0.2.0.post1+g{later}"
    assert version_of.source_date_epoch(repo) == int(git(repo, "log", "-1", "--format=%ct"))


def test_no_git_checkout_gives_none_and_the_build_file_wins(tmp_path):
    assert version_of.from_git(tmp_path) is None and version_of.source_date_epoch(tmp_path) is None
    assert version_of.current_from(tmp_path) == version_of.FALLBACK
    (tmp_path / "gpuprep").mkdir()
    (tmp_path / "gpuprep/_version.py").write_text(version_of.build_file("1.2.3.post4+gabc"))
    assert version_of.current_from(tmp_path) == "1.2.3.post4+gabc"


def test_a_fresh_clone_builds_a_wheel_that_names_its_commit(tmp_path):
    """CI's case: a clone of this repository, tagged there, built by pip (setup.py) with no network."""
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", "--no-hardlinks", str(REPO), str(clone)], check=True, timeout=120,
                   capture_output=True, env=GIT_ENV)
    cache = distkit.cache_root() / "wheels"
    spec = importlib.util.spec_from_file_location("wheelhouse", REPO / "packaging/wheelhouse.py")
    wheelhouse = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(wheelhouse)
    for name in wheelhouse.SOURCES:  # this checkout's sources as they are, its uncommitted changes included
        if (REPO / name).is_dir():
            shutil.rmtree(clone / name)
            shutil.copytree(REPO / name, clone / name, ignore=shutil.ignore_patterns("__pycache__", "_version.py"))
        else:
            shutil.copy2(REPO / name, clone / name)
    git(clone, "add", "-A")
    git(clone, "commit", "-q", "--allow-empty", "-m", "the checkout under test")
    git(clone, "tag", "v9.8.7")
    later = commit(clone, "CHANGELOG-extra.txt")
    with tempfile.TemporaryDirectory() as tmp:  # setuptools into the suite's cache (the index once), as make dist
        wheelhouse.fetch(list(wheelhouse.BUILD_REQUIRES), Path(tmp), cache)
    proc = subprocess.run([str(REPO / ".venv/bin/python"), "-m", "pip", "wheel", "-q", "--no-deps", "--no-index",
                           "--find-links", str(cache), "-w", str(tmp_path / "out"), str(clone)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    wheel = next((tmp_path / "out").glob("gpuprep-*.whl"))
    assert wheel.name == f"gpuprep-9.8.7.post1+g{later}-py3-none-any.whl"
    with zipfile.ZipFile(wheel) as zf:
        assert zf.read("gpuprep/_version.py").decode() == version_of.build_file(f"9.8.7.post1+g{later}")
