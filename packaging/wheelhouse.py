"""`make dist`: a wheelhouse that installs gpuprep offline on a target Python and platforms (docs/packaging.md).

    python packaging/wheelhouse.py [--python 3.9] [--platform manylinux2014_x86_64 ...] [--out dist]
                                   [--cache DIR] [--update-lock]

It holds gpuprep's own wheel (pure Python), a wheel of every dependency for each platform (`pip download
--only-binary=:all:`: no sdist is ever built on an instance), the pip wheel install.sh runs, install.sh,
PYTHON (the target X.Y) and requirements.txt, which pins every wheel by version and sha256 so that
`pip install --require-hashes` installs exactly these files. Written as DIR/gpuprep-wheelhouse-pyX.Y/ and
DIR/gpuprep-wheelhouse-pyX.Y.tar.gz.

The dependencies are the ones the committed lock packaging/lock/pyX.Y.txt names, fetched with --require-hashes:
a build takes no newer release than the lock and no file whose hash differs. --update-lock resolves
pyproject.toml's dependencies afresh (the newest releases) and rewrites the lock instead (review its diff).

Reproducible: two builds of one commit with the same lock give the same bytes (SOURCE_DATE_EPOCH is the last
commit's time unless set; gpuprep's wheel is built with it; the tar is sorted, owned by root, every mtime that
time, the gzip header without name or time).

--cache DIR keeps the downloaded wheels: a build whose wheels are all there asks no index (tests build
the wheelhouse offline this way after the first run).
"""

from __future__ import annotations

import argparse
import email.parser
import gzip
import hashlib
import importlib.util
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from collections import defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
INSTALL_SH = Path(__file__).resolve().parent / "install.sh"
DEFAULT_PYTHON = "3.9"  # Amazon Linux 2023's and RHEL 9's python3; pyproject.toml's floor
DEFAULT_PLATFORMS = ("manylinux2014_x86_64", "manylinux2014_aarch64")  # glibc 2.17+: AL2023 has 2.34
BUILD_REQUIRES = ("setuptools>=77",)  # pyproject.toml's [build-system] requires
LOCK_DIR = Path(__file__).resolve().parent / "lock"
# The zip format's earliest date: the build's time when neither SOURCE_DATE_EPOCH nor git gives one.
ZIP_EPOCH = 315532800

_spec = importlib.util.spec_from_file_location("gpuprep_version", REPO / "gpuprep/version.py")
version_of = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(version_of)


class DistError(RuntimeError):
    pass


def pip(*args: str, timeout: float = 900, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    argv = [sys.executable, "-m", "pip", "--disable-pip-version-check", *args]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL,
                          env=env)
    return proc


def source_date_epoch() -> int:
    """SOURCE_DATE_EPOCH as given, else the last commit's time, else ZIP_EPOCH (reproducible-builds.org)."""
    given = os.environ.get("SOURCE_DATE_EPOCH", "")
    if given.isdigit():
        return int(given)
    return version_of.source_date_epoch(REPO) or ZIP_EPOCH


def lock_file(python: str) -> Path:
    return LOCK_DIR / f"py{python}.txt"


def fetch(requirements: list[str], dest: Path, cache: Path | None, *options: str) -> None:
    """Download ``requirements`` (and their dependencies) as wheels into the empty folder ``dest``.

    From ``cache`` alone when it has them all (no index asked); else from the index, keeping a copy there.
    """
    if cache is not None:
        offline = pip("download", "--quiet", "--no-index", "--find-links", str(cache), "--dest", str(dest),
                      *options, *requirements)
        if offline.returncode == 0:
            return
        for stale in dest.iterdir():
            stale.unlink()
    online = pip("download", "--quiet", "--dest", str(dest), *options, *requirements)
    if online.returncode != 0:
        raise DistError(f"pip download {' '.join(options)} {' '.join(requirements)} failed:\n{online.stderr[-3000:]}")
    if cache is not None:
        cache.mkdir(parents=True, exist_ok=True)
        for wheel in dest.iterdir():
            shutil.copy2(wheel, cache / wheel.name)


# What the wheel is built from: a copy, so that setuptools' build/ of an earlier run (which keeps modules
# since deleted from the checkout) never ends up in the wheel, and the checkout is not written to.
SOURCES = ("pyproject.toml", "setup.py", "README.md", "LICENSE", "gpuprep")


def build_own_wheel(dest: Path, cache: Path | None, epoch: int) -> Path:
    """gpuprep's wheel from this checkout, built in pip's isolated environment (setuptools from the cache
    when there is one, so a cached build needs no network), its version from git and its zip dated ``epoch``."""
    args = ["wheel", "--quiet", "--no-deps", "--wheel-dir", str(dest)]
    if cache is not None:
        with tempfile.TemporaryDirectory() as tmp:
            fetch(list(BUILD_REQUIRES), Path(tmp), cache)
        args += ["--no-index", "--find-links", str(cache)]
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "gpuprep-src"
        src.mkdir()
        for name in SOURCES:
            if (REPO / name).is_dir():
                shutil.copytree(REPO / name, src / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
            else:
                shutil.copy2(REPO / name, src / name)
        # The copy has no .git: it carries the checkout's version (setup.py reads it from there).
        (src / "gpuprep/_version.py").write_text(version_of.build_file(version_of.current_from(REPO)))
        proc = pip(*args, str(src), env={**os.environ, "SOURCE_DATE_EPOCH": str(epoch)})
    if proc.returncode != 0:
        raise DistError(f"building gpuprep's wheel failed:\n{proc.stderr[-3000:]}")
    wheels = sorted(dest.glob("gpuprep-*.whl"))
    if len(wheels) != 1:
        raise DistError(f"expected one gpuprep wheel in {dest}, found {[w.name for w in wheels]}")
    return wheels[0]


def wheel_metadata(wheel: Path) -> email.message.Message:
    with zipfile.ZipFile(wheel) as zf:
        name = next(n for n in zf.namelist() if re.fullmatch(r"[^/]+\.dist-info/METADATA", n))
        return email.parser.Parser().parsestr(zf.read(name).decode("utf-8"))


def runtime_requirements(wheel: Path) -> list[str]:
    """The wheel's Requires-Dist without extras (the test extra is not shipped)."""
    return [r for r in wheel_metadata(wheel).get_all("Requires-Dist") or [] if "extra ==" not in r]


def name_version(wheel: Path) -> tuple[str, str]:
    """(normalized name, version) from a wheel's file name (PEP 427 / PEP 503)."""
    name, version = wheel.name.split("-")[:2]
    return re.sub(r"[-_.]+", "-", name).lower(), version


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


LOCK_HEADER = ("# gpuprep's wheelhouse: every wheel pinned by version and sha256 (install.sh installs with\n"
               "# --require-hashes). Written by packaging/wheelhouse.py; do not edit.")


def lock_header(python: str, platforms: list[str]) -> str:
    return ("# make dist's dependencies for Python " + python + " on " + ", ".join(platforms) + ": every wheel by\n"
            "# version and sha256 (pip download --require-hashes). Written by `python packaging/wheelhouse.py\n"
            f"# --python {python} --update-lock` from pyproject.toml's dependencies; do not edit by hand.")


def lock(wheels: list[Path]) -> str:
    """requirements.txt: each distribution pinned to its one version, with the hash of every platform's wheel."""
    versions: dict[str, set[str]] = defaultdict(set)
    hashes: dict[str, list[str]] = defaultdict(list)
    for wheel in sorted(wheels):
        name, version = name_version(wheel)
        versions[name].add(version)
        hashes[name].append(sha256(wheel))
    lines = [LOCK_HEADER]
    for name in sorted(versions):
        if len(versions[name]) != 1:
            raise DistError(f"{name} resolved to different versions on different platforms "
                            f"({', '.join(sorted(versions[name]))}): one install lock cannot hold both")
        pins = " ".join(f"--hash=sha256:{h}" for h in sorted(set(hashes[name])))
        lines.append(f"{name}=={versions[name].pop()} {pins}")
    return "\n".join(lines) + "\n"


def check_python(python: str) -> None:
    if not re.fullmatch(r"3\.\d+", python):
        raise DistError(f"--python {python!r}: give a Python version as X.Y, e.g. 3.9")


def build(python: str, platforms: list[str], out: Path, cache: Path | None) -> Path:
    check_python(python)
    locked = lock_file(python)
    if not locked.is_file():
        raise DistError(f"no lock for Python {python} ({locked.relative_to(REPO)}): write one with "
                        f"`python packaging/wheelhouse.py --python {python} --update-lock` and commit it")
    epoch = source_date_epoch()
    name = f"gpuprep-wheelhouse-py{python}"
    out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{name}.", dir=out))
    try:
        house = work / name
        house.mkdir()
        own = build_own_wheel(house, cache, epoch)
        dependencies: list[Path] = []
        for platform in platforms:
            dest = work / platform
            dest.mkdir()
            # Exactly the lock's files: a release newer than the lock, or a file whose hash differs, fails.
            fetch(["--requirement", str(locked)], dest, cache, "--require-hashes", "--only-binary=:all:",
                  "--python-version", python, "--platform", platform)
            for wheel in dest.iterdir():
                target = house / wheel.name
                if not target.exists():
                    shutil.copy2(wheel, target)
                    if not wheel.name.startswith("pip-"):
                        dependencies.append(target)
        pips = sorted(house.glob("pip-*.whl"))
        if len(pips) != 1:
            raise DistError(f"expected one pip wheel, found {[p.name for p in pips]}")
        (house / "requirements.txt").write_text(lock([own, *dependencies]))
        (house / "PYTHON").write_text(python + "\n")
        shutil.copy2(INSTALL_SH, house / "install.sh")
        (house / "install.sh").chmod(0o755)
        final = out / name
        shutil.rmtree(final, ignore_errors=True)
        house.rename(final)
        tar_gz(final, out / f"{name}.tar.gz", epoch)
        return final
    finally:
        shutil.rmtree(work, ignore_errors=True)


def tar_gz(folder: Path, dest: Path, epoch: int) -> None:
    """The wheelhouse as one file to upload (S3, an artifact store), the same bytes for the same inputs: sorted,
    owned by root, every mtime ``epoch``, modes 0755/0644, a gzip header with no file name and ``epoch`` as its
    time (tarfile's "w:gz" would record the temporary name and now). Written atomically."""
    def normalize(info: tarfile.TarInfo) -> tarfile.TarInfo:
        info.uid = info.gid = 0
        info.uname = info.gname = "root"
        info.mtime = epoch
        info.mode = 0o755 if info.isdir() or info.mode & 0o100 else 0o644
        return info

    tmp = dest.with_name(f".{dest.name}.tmp")
    with open(tmp, "wb") as raw, gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=epoch) as gz, \
            tarfile.open(fileobj=gz, mode="w", format=tarfile.PAX_FORMAT) as tf:
        tf.add(folder, arcname=folder.name, recursive=False, filter=normalize)
        for path in sorted(folder.iterdir()):
            tf.add(path, arcname=f"{folder.name}/{path.name}", filter=normalize)
    tmp.rename(dest)


def update_lock(python: str, platforms: list[str], cache: Path | None) -> Path:
    """Resolve pyproject.toml's dependencies afresh for each platform (and pip, which install.sh runs from its
    wheel) and write them, with every platform's hash, to the lock."""
    check_python(python)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        own = build_own_wheel(work, cache, source_date_epoch())
        requirements = runtime_requirements(own)
        wheels: list[Path] = []
        for platform in platforms:
            dest = work / platform
            dest.mkdir()
            fetch([*requirements, "pip"], dest, cache, "--only-binary=:all:", "--python-version", python,
                  "--platform", platform)
            wheels += dest.iterdir()
        target = lock_file(python)
        target.parent.mkdir(exist_ok=True)
        text = lock(wheels).replace(LOCK_HEADER, lock_header(python, platforms))
        target.write_text(text)
    return target


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--python", default=DEFAULT_PYTHON, help="target Python X.Y (default %(default)s)")
    parser.add_argument("--platform", action="append", dest="platforms",
                        help=f"pip platform tag, repeatable (default {' '.join(DEFAULT_PLATFORMS)})")
    parser.add_argument("--out", type=Path, default=REPO / "dist", help="output folder (default dist/)")
    parser.add_argument("--cache", type=Path, help="keep downloaded wheels here; build offline when all are")
    parser.add_argument("--update-lock", action="store_true",
                        help="resolve the dependencies afresh and rewrite packaging/lock/pyX.Y.txt; build nothing")
    args = parser.parse_args(argv)
    if args.update_lock:
        try:
            target = update_lock(args.python, args.platforms or list(DEFAULT_PLATFORMS), args.cache)
        except DistError as exc:
            print(f"wheelhouse: {exc}", file=sys.stderr)
            return 1
        print(f"{target}: review its diff and commit it")
        return 0
    try:
        house = build(args.python, args.platforms or list(DEFAULT_PLATFORMS), args.out, args.cache)
    except DistError as exc:
        print(f"wheelhouse: {exc}", file=sys.stderr)
        return 1
    wheels = sorted(p.name for p in house.glob("*.whl"))
    print(f"{house} ({len(wheels)} wheels) and {house}.tar.gz")
    print(f"install: copy it to the instance, then `{house.name}/install.sh` as root")
    return 0


if __name__ == "__main__":
    sys.exit(main())
