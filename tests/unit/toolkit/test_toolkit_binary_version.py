"""The toolkit's version from its own binary where no package records it (toolkit/stack.py
``binary_toolkit_version``): found on the accelerator machine, where the toolkit was installed without a package and
doctor called it "not installed" and judged no security floor (tests/fixtures/real-gpu/2026-12-07-toolkit/README.md).

Real: NVIDIA's nvidia-ctk 1.17.8, 1.18.0, 1.19.1 and 1.20.0 (tests/provision.sh unpacks them), this Debian machine's
package databases (dpkg, and the rpm of the test bed: neither records a toolkit). Nothing simulated.
"""

from __future__ import annotations

import os
import shutil

import pytest
from conftest import require_toolkit

from gpuprep.host import Host
from gpuprep.packages import security
from gpuprep.platform import detect
from gpuprep.toolkit.stack import binary_toolkit_version, toolkit_version

pytestmark = pytest.mark.allow_subp("nvidia-ctk", "dpkg-query", "rpm")
VERSIONS = ("1.17.8", "1.18.0", "1.19.1", "1.20.0")


def live_with(version: str) -> Host:
    path = f"{require_toolkit(version)}:{os.environ.get('PATH', '/usr/bin:/bin')}"
    return Host("/", env={**os.environ, "PATH": path})


@pytest.mark.parametrize("version", VERSIONS)
def test_the_live_hosts_toolkit_is_known_from_its_binary_when_no_package_has_it(version):
    host = live_with(version)
    assert binary_toolkit_version(host) == version
    assert toolkit_version(host, detect(host)) == version  # no package database here records a toolkit


def test_a_binary_below_the_floor_is_judged_by_the_floor():
    version = binary_toolkit_version(live_with("1.17.8"))
    assert "CVE-2026-24260" in security.describe(version)
    assert security.advisories_for(binary_toolkit_version(live_with("1.20.0"))) == []


def test_a_binary_inside_root_is_never_run(tmp_path):
    (tmp_path / "usr/bin").mkdir(parents=True)
    shutil.copy(require_toolkit("1.17.8") / "nvidia-ctk", tmp_path / "usr/bin/nvidia-ctk")
    assert binary_toolkit_version(Host(tmp_path)) is None


def test_no_nvidia_ctk_on_path_is_no_version():
    assert binary_toolkit_version(Host("/", env={**os.environ, "PATH": "/nonexistent"})) is None
