"""The Packer template validates and is formatted, with Debian's real packer 1.6.6, offline.

``packer validate`` checks the HCL2 and prepares every provisioner (a missing script or wheelhouse is an
error), and the amazon-ebs source with ``skip_credential_validation``: no AWS account is reached.
``CHECKPOINT_DISABLE=1`` keeps packer from asking HashiCorp for a newer version. The provisioners' order
is asserted here; tests/system/test_fleet_pipelines.py runs those same scripts in that order in a
simulated instance.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import integrations_kit as ik
import pytest
from conftest import require


def packer(*args: str, cwd: Path, home: Path) -> subprocess.CompletedProcess:
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(home), "CHECKPOINT_DISABLE": "1",
           "PACKER_CACHE_DIR": str(home / "cache")}
    return subprocess.run(["packer", *args], capture_output=True, text=True, timeout=120, cwd=cwd, env=env)


@pytest.fixture
def wheelhouse(tmp_path: Path) -> Path:
    d = tmp_path / "wheelhouse"
    d.mkdir()
    (d / "gpuprep-0.0.0-py3-none-any.whl").write_bytes(b"")  # validate only stats it
    return d


def test_packer_validates_offline(tmp_path: Path, wheelhouse: Path):
    require("packer")
    proc = packer("validate", "-var", "skip_credential_validation=true", "-var", f"wheelhouse={wheelhouse}",
                  "-var", f"artifacts={tmp_path / 'artifacts'}", str(ik.PACKER_TEMPLATE), cwd=tmp_path, home=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_packer_fmt_check(tmp_path: Path):
    require("packer")
    proc = packer("fmt", "-check", "-diff", str(ik.PACKER_TEMPLATE.parent), cwd=tmp_path, home=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_this_packer_rejects_required_plugins(tmp_path: Path, wheelhouse: Path):
    """Why the template has no `packer { required_plugins }` block: Debian's 1.6.6 refuses it."""
    require("packer")
    text = ik.PACKER_TEMPLATE.read_text().replace("${path.root}", str(ik.PACKER_TEMPLATE.parent))
    with_block = tmp_path / "with-required-plugins.pkr.hcl"
    with_block.write_text('packer {\n  required_plugins {\n    amazon = {\n      version = ">= 1.2.0"\n'
                          '      source  = "github.com/hashicorp/amazon"\n    }\n  }\n}\n\n' + text)
    proc = packer("validate", "-var", f"wheelhouse={wheelhouse}", str(with_block), cwd=tmp_path, home=tmp_path)
    assert proc.returncode != 0 and "required_plugins" in proc.stdout + proc.stderr, proc.stdout + proc.stderr
    assert not re.search(r"^packer \{", ik.PACKER_TEMPLATE.read_text(), re.M)


def test_provisioners_in_order():
    steps = ik.packer_provisioners({"wheelhouse": "/w", "artifacts": "/a"})
    scripts = [Path(str(p.attrs["script"])).name for p in steps if "script" in p.attrs]
    assert scripts == ["install-wheelhouse.sh", "build-install.sh", "build-doctor.sh", "build-verdict.sh",
                       "build-seal.sh"]
    for p in steps:
        if "script" in p.attrs:
            assert Path(str(p.attrs["script"])).is_file() and os.access(str(p.attrs["script"]), os.X_OK)
    kinds = [(p.kind, p.attrs.get("direction", "")) for p in steps]
    download = kinds.index(("file", "download"))
    verdict = next(i for i, p in enumerate(steps) if str(p.attrs.get("script", "")).endswith("build-verdict.sh"))
    assert download < verdict, "the doctor report is fetched before the verdict can stop the build"
    assert str(steps[-1].attrs["script"]).endswith("build-seal.sh"), "seal is the last provisioner"
