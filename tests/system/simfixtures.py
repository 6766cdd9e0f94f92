"""Fixtures of the booted-host tests: the cached base tree, the fixture repositories, a fresh instance.

Test modules star-import them: a second conftest.py would clash with tests/conftest.py under
pytest's default import mode.

Real components: systemd (PID 1 in a systemd-nspawn container), docker.service with Debian's
Engine, dnf/rpm, createrepo_c, NVIDIA's nvidia-ctk 1.17.8 in the toolkit's fixture RPM. SIMULATED (what this
machine lacks): the GPU and driver (a fake nvidia-smi, a runtime shim that execs runc: NVIDIA's runtime in these
legacy-mode hosts needs the driver), Amazon Linux itself (a Debian tree with AL's os-release), Amazon's and NVIDIA's
repositories (fixture RPMs), the ECS agent (a stand-in).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import require, require_root  # tests/conftest.py: the shared skip helpers

__all__ = ["base_tree", "sim_cache", "repos", "wheelhouse", "instance", "module_instance", "make_instance",
           "require_booted_host"]


def require_booted_host() -> None:
    require_root()
    require("systemd-nspawn", "debootstrap", "nsenter", "rpmbuild", "createrepo_c", "dnf", "busybox")


@pytest.fixture(scope="session")
def base_tree() -> Path:
    require_booted_host()
    import image

    return image.base_tree()


@pytest.fixture(scope="session")
def sim_cache() -> Path:
    import image

    path = image.cache_root()
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture(scope="session")
def repos(sim_cache: Path, tmp_path_factory) -> dict[str, Path]:
    require_booted_host()
    import fixture_repo

    return fixture_repo.build(tmp_path_factory.mktemp("repos"), cache=sim_cache / "rpms")


@pytest.fixture(scope="session")
def wheelhouse(tmp_path_factory) -> Path:
    """`make dist`'s tarball (the README's user-data fetches it from S3; the instance, from /run)."""
    import distkit

    folder = distkit.build_wheelhouse(tmp_path_factory.mktemp("dist"))
    return folder.parent / f"{folder.name}.tar.gz"


@pytest.fixture
def make_instance(base_tree: Path, repos: dict[str, Path], wheelhouse: Path) -> Iterator:
    """A factory: ``make_instance(os_release=..., before_boot=fn)`` -> a booted instance, closed after the test."""
    from sim import Instance

    made = []

    def make(before_boot=None, **kwargs):
        inst = Instance(base_tree, repos, wheelhouse=wheelhouse, **kwargs)
        made.append(inst)
        inst.prepare()
        if before_boot is not None:
            before_boot(inst)
        inst.first_boot()
        return inst

    try:
        yield make
    finally:
        for inst in made:
            inst.close()


def _booted_instance(base_tree: Path, repos: dict[str, Path], wheelhouse: Path) -> Iterator:
    from sim import Instance

    inst = Instance(base_tree, repos, wheelhouse=wheelhouse)
    try:
        inst.prepare()
        inst.first_boot()
        yield inst
    finally:
        inst.close()


@pytest.fixture
def instance(base_tree: Path, repos: dict[str, Path], wheelhouse: Path, sim_cache: Path) -> Iterator:
    """A fresh AL2023 GPU instance, booted, gpuprep not yet installed (user-data does that)."""
    yield from _booted_instance(base_tree, repos, wheelhouse)


@pytest.fixture(scope="module")
def module_instance(base_tree: Path, repos: dict[str, Path], wheelhouse: Path) -> Iterator:
    """One fresh AL2023 GPU instance shared by a module's tests: for tests that each look at one part
    of the same run, or that carry on from the state the previous test left (each says so)."""
    yield from _booted_instance(base_tree, repos, wheelhouse)
