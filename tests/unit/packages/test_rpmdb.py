"""The one reader of installed packages (packages/rpmdb.py), against this machine's real dpkg and rpm."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from gpuprep.host import Host
from gpuprep.packages.rpmdb import dpkg_installed, installed, rpm_installed

pytestmark = pytest.mark.allow_subp("dpkg-query", "rpm")


def test_dpkg_installed_reads_this_machines_dpkg():
    """Debian's own dpkg database: dpkg itself is installed; a name nothing has is absent, not an error."""
    if shutil.which("dpkg-query") is None:
        pytest.skip("needs dpkg-query (a Debian or Ubuntu machine)")
    want = subprocess.run(["dpkg-query", "-W", "-f", "${Version}", "dpkg"], capture_output=True, text=True,
                          check=True).stdout
    assert dpkg_installed(Host("/"), ("dpkg", "gpuprep-no-such-package")) == {"dpkg": want}


def test_rpm_readers_ask_nothing_of_a_tree_without_a_database(tmp_path):
    """rpm -q --root would create a database inside the image: a tree without one is 'nothing installed'."""
    host = Host(tmp_path)
    assert installed(host, ("docker",)) == [] and rpm_installed(host, ("docker",)) == {}
    assert not any(tmp_path.rglob("*")), "a query wrote into the tree"
