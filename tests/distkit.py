"""The install path as the README gives it, for the tests: `make dist`'s wheelhouse and the floor Python.

- ``build_wheelhouse(out)`` runs packaging/wheelhouse.py (what `make dist` runs) with the suite's wheel cache:
  the first build downloads the dependency wheels from the index, every later one asks no index.
- ``floor_python()`` finds a CPython of pyproject.toml's floor (3.9) on this machine: pyenv's (these
  machines have one) or python3.9 on PATH.
- ``bullseye_python_debs()`` fetches Debian bullseye's python3.9 (and what bookworm lacks for it) as .debs,
  once: the simulated AL2023 instance's python3 (tests/system/image.py).
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
FLOOR = "3.9"  # pyproject.toml's requires-python; packaging/wheelhouse.py's default target
WHEELHOUSE = f"gpuprep-wheelhouse-py{FLOOR}"
# Debian bullseye's CPython 3.9 and what bookworm has no package of (libssl1.1, libffi7, libmpdec3); the rest
# of its dependencies are bookworm's. Debian 12 has no python3.9; Amazon Linux 2023's python3 is 3.9.
BULLSEYE = "deb http://deb.debian.org/debian bullseye main"
BULLSEYE_PYTHON = ("python3.9-minimal", "libpython3.9-minimal", "libpython3.9-stdlib", "python3.9", "libssl1.1",
                   "libffi7", "libmpdec3")
# Parts of CPython that Debian splits off and AL2023's python3.9 ships: pip imports distutils on 3.9. Their
# Depends name bullseye's python3 (3.9), which bookworm's (3.11) cannot be, so they are unpacked (dpkg-deb -x):
# their files are all under /usr/lib/python3.9.
BULLSEYE_PYTHON_UNPACKED = ("python3-distutils", "python3-lib2to3")


def cache_root() -> Path:
    """Where the suite keeps what it fetched or built once: outlives a checkout (CI clones afresh)."""
    env = os.environ.get("GPUPREP_TEST_CACHE")
    if env:
        return Path(env)
    return Path("/var/cache/gpuprep-tests") if os.geteuid() == 0 else REPO / ".cache" / "gpuprep-tests"


def build_wheelhouse(out: Path, *platforms: str) -> Path:
    """`make dist` into ``out``: returns the wheelhouse folder (its .tar.gz lies beside it)."""
    argv = [sys.executable, str(REPO / "packaging/wheelhouse.py"), "--python", FLOOR, "--out", str(out),
            "--cache", str(cache_root() / "wheels")]
    for platform in platforms:
        argv += ["--platform", platform]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=900, stdin=subprocess.DEVNULL)
    if proc.returncode != 0:
        raise RuntimeError(f"packaging/wheelhouse.py exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}")
    return out / WHEELHOUSE


def python_version(python: str) -> str | None:
    try:
        proc = subprocess.run([python, "-c", "import sys, venv; print('%d.%d' % sys.version_info[:2])"],
                              capture_output=True, text=True, timeout=30)
    except OSError:
        return None
    return proc.stdout.strip() if proc.returncode == 0 else None


def find_python(version: str) -> str | None:
    """A working CPython ``version`` (X.Y): pyenv's own binary first (its shim on PATH may select none)."""
    pyenv = os.environ.get("PYENV_ROOT", "/root/.pyenv")
    candidates = sorted(glob.glob(f"{pyenv}/versions/{version}.*/bin/python{version}"), reverse=True)
    candidates += [p for p in [shutil.which(f"python{version}"), f"/usr/bin/python{version}"] if p]
    for candidate in candidates:
        if python_version(candidate) == version:
            return candidate
    return None


def floor_python() -> str | None:
    return find_python(FLOOR)


def bullseye_python_debs() -> list[Path]:
    """Debian bullseye's python3.9 .debs, downloaded once into the cache (the Debian registry, once)."""
    dest = cache_root() / "python3.9-bullseye"
    debs = sorted(dest.glob("*.deb"))
    if len(debs) == len(BULLSEYE_PYTHON) + len(BULLSEYE_PYTHON_UNPACKED):
        return debs
    with tempfile.TemporaryDirectory() as work:
        w = Path(work)
        for d in ("lists/partial", "cache/archives/partial", "debs"):
            (w / d).mkdir(parents=True)
        (w / "sources.list").write_text(BULLSEYE + "\n")
        # This machine's dpkg status is left out: what it has installed must not become the candidate.
        opts = ["-o", f"Dir::Etc::SourceList={w}/sources.list", "-o", "Dir::Etc::SourceParts=/dev/null",
                "-o", f"Dir::State::Lists={w}/lists", "-o", f"Dir::Cache={w}/cache", "-o", "APT::Sandbox::User=root",
                "-o", "Dir::State::status=/dev/null"]
        for argv, cwd in ((["apt-get", *opts, "update", "-qq"], None),
                          (["apt-get", *opts, "download", "-qq", *BULLSEYE_PYTHON, *BULLSEYE_PYTHON_UNPACKED],
                           w / "debs")):
            proc = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=600, stdin=subprocess.DEVNULL)
            if proc.returncode != 0:
                raise RuntimeError(f"{' '.join(argv[:1] + argv[-3:])} exited {proc.returncode}: {proc.stderr[-2000:]}")
        dest.mkdir(parents=True, exist_ok=True)
        for deb in (w / "debs").glob("*.deb"):
            shutil.copy2(deb, dest / deb.name)
    return sorted(dest.glob("*.deb"))


def unpacked_only(deb: Path) -> bool:
    """A .deb of BULLSEYE_PYTHON_UNPACKED (unpacked, not installed)."""
    return deb.name.split("_")[0] in BULLSEYE_PYTHON_UNPACKED


if __name__ == "__main__":
    # tests/provision.sh: `python3 tests/distkit.py floor-python` prints the floor interpreter, exit 1 if none.
    if sys.argv[1:] == ["floor-python"]:
        print(floor_python() or "")
        sys.exit(0 if floor_python() else 1)
    sys.exit("usage: distkit.py floor-python")
