"""Fixtures of the fleet tests (tests/system/test_fleet_*.py): the wheelhouse folder, an ssh key.

Star-imported by the test modules, beside simfixtures (one conftest.py would clash with tests/conftest.py).
Real and simulated as in fleet.py and simfixtures.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import require
from simfixtures import require_booted_host

__all__ = ["wheelhouse_dir", "fleet_key", "require_fleet_host"]


def require_fleet_host() -> None:
    require_booted_host()
    require("ip", "ssh", "ssh-keygen")


@pytest.fixture(scope="session")
def wheelhouse_dir(wheelhouse: Path) -> Path:
    """The folder beside simfixtures' `make dist` tarball (`dist/gpuprep-wheelhouse-pyX.Y/`, install.sh in it):
    what Packer uploads and Ansible copies. The same build, not a second one."""
    require_fleet_host()
    folder = wheelhouse.with_name(wheelhouse.name.removesuffix(".tar.gz"))
    assert (folder / "install.sh").is_file(), f"no install.sh in {folder}"
    return folder


@pytest.fixture(scope="session")
def fleet_key(tmp_path_factory) -> tuple[Path, str]:
    require_fleet_host()
    import fleet

    return fleet.ssh_key(tmp_path_factory.mktemp("ssh"))
