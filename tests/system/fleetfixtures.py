"""Fixtures of the fleet tests (tests/system/test_fleet_*.py): the wheelhouse, an ssh key, the booted fleet.

Star-imported by the test modules, beside simfixtures (one conftest.py would clash with tests/conftest.py).
Real and simulated as in fleet.py and simfixtures.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import require
from simfixtures import require_booted_host

__all__ = ["fleet_wheelhouse", "fleet_key", "require_fleet_host"]


def require_fleet_host() -> None:
    require_booted_host()
    require("ip", "ssh", "ssh-keygen")


@pytest.fixture(scope="session")
def fleet_wheelhouse(tmp_path_factory) -> Path:
    """gpuprep's wheelhouse, as `make dist` will build it (issue 16); built here until it lands."""
    require_fleet_host()
    import fleet

    return fleet.wheelhouse(tmp_path_factory.mktemp("wheelhouse") / "wheelhouse")


@pytest.fixture(scope="session")
def fleet_key(tmp_path_factory) -> tuple[Path, str]:
    require_fleet_host()
    import fleet

    return fleet.ssh_key(tmp_path_factory.mktemp("ssh"))
