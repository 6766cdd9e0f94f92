"""gpuprep's version, from git: a release is a tag `vX.Y.Z`; any other build names its commit (docs/packaging.md).

- tag `v0.2.0` on the built commit: `0.2.0`;
- 3 commits after it: `0.2.0.post3+g<12 hex>`; no tag yet: `0.0.0+g<12 hex>`;
- a checkout with uncommitted changes adds `.dirty` to the local part.

A wheel carries the value in `gpuprep/_version.py`, written at build time (setup.py's build_py, or
packaging/wheelhouse.py into the copy it builds from), so an installed gpuprep never runs git. A source checkout
without that file asks git when the version is first read; with no git either it is FALLBACK.

Stdlib only, and importable on its own: setup.py loads this file before gpuprep's dependencies exist.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

FALLBACK = "0+unknown"  # PEP 440's "local version of nothing": no tag, no commit, no build file
TAG_PATTERN = "v[0-9]*"
_BARE = re.compile(r"(?P<sha>[0-9a-f]{7,40})(?P<dirty>-dirty)?")  # `--always` with no tag: the commit alone
_DESCRIBE = re.compile(r"v(?P<tag>\d+(?:\.\d+)*)-(?P<distance>\d+)-g(?P<sha>[0-9a-f]+)(?P<dirty>-dirty)?")


def _git(repo: Path, *args: str) -> str | None:
    try:
        proc = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, timeout=10,
                              stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return proc.stdout.strip() if proc.returncode == 0 else None


def from_describe(describe: str) -> str:
    """PEP 440 from `git describe --tags --long --dirty --abbrev=12` (`v0.2.0-3-gabc...-dirty`)."""
    m = _DESCRIBE.fullmatch(describe)
    if m is None:
        raise ValueError(f"not a `git describe --long` of a vX.Y.Z tag: {describe!r}")
    distance = int(m["distance"])
    local = [] if distance == 0 else [f"g{m['sha']}"]
    if m["dirty"]:
        local.append("dirty")
    version = m["tag"] if distance == 0 else f"{m['tag']}.post{distance}"
    return version + ("+" + ".".join(local) if local else "")


def from_git(repo: Path) -> str | None:
    """The version of the checkout at ``repo``, or None when it is not a git checkout (or git is missing).

    One git process (a source checkout asks on every report): `--always` answers the bare commit when no
    vX.Y.Z tag is there yet."""
    if not (repo / ".git").exists():  # an installed copy inside someone else's repository is not ours to describe
        return None
    describe = _git(repo, "describe", "--tags", "--long", "--dirty", "--abbrev=12", "--always", "--match",
                    TAG_PATTERN)
    if not describe:
        return None
    if _DESCRIBE.fullmatch(describe):
        return from_describe(describe)
    m = _BARE.fullmatch(describe)
    if m is None:
        return None
    return f"0.0.0+g{m['sha']}" + (".dirty" if m["dirty"] else "")


def source_date_epoch(repo: Path) -> int | None:
    """The last commit's time (reproducible builds' SOURCE_DATE_EPOCH, reproducible-builds.org), or None."""
    if not (repo / ".git").exists():
        return None
    stamp = _git(repo, "log", "-1", "--format=%ct")
    return int(stamp) if stamp and stamp.isdigit() else None


def build_file(version: str) -> str:
    """gpuprep/_version.py's text for a build of ``version``."""
    return ("# Written at build time by setup.py or packaging/wheelhouse.py (gpuprep/version.py); not in git.\n"
            f"__version__ = {version!r}\n")


def current() -> str:
    """This gpuprep's version: the build's file, else git (a source checkout), else FALLBACK."""
    try:
        from gpuprep._version import __version__  # type: ignore[import-not-found]
        return str(__version__)
    except ImportError:
        pass
    return from_git(Path(__file__).resolve().parents[1]) or FALLBACK


def current_from(repo: Path) -> str:
    """The version of a checkout at ``repo`` for a build of it: git, else its build file, else FALLBACK."""
    from_repo = from_git(repo)
    if from_repo:
        return from_repo
    built = repo / "gpuprep/_version.py"
    if built.is_file():
        match = re.search(r"__version__ = '([^']+)'", built.read_text())
        if match:
            return match[1]
    return FALLBACK
