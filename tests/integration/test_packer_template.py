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
import shutil
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
    """A folder named and shaped as `make dist`'s (validate only stats the upload's source; the real one is
    built and installed by tests/system/test_fleet_pipelines.py)."""
    d = tmp_path / "gpuprep-wheelhouse-py3.9"
    d.mkdir()
    (d / "gpuprep-0.0.0-py3-none-any.whl").write_bytes(b"")
    (d / "install.sh").write_text("#!/bin/sh\n")
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


def test_required_plugins_live_beside_the_template_for_current_packers(tmp_path: Path, wheelhouse: Path):
    """plugins.pkr.hcl carries the `required_plugins` block current Packers need (`packer init` reads it from the
    folder); Debian's 1.6.6 refuses that block, which is why it is a file of its own: 1.6.6 validates the template
    file alone (above) and fails on the folder, naming the block, as the template's header says."""
    require("packer")
    plugins = ik.PACKER_TEMPLATE.parent / "plugins.pkr.hcl"
    assert re.search(r'^  required_plugins \{\n    amazon = \{\n      version = ">= [0-9.]+"\n'
                     r'      source  = "github.com/hashicorp/amazon"', plugins.read_text(), re.M)
    assert not re.search(r"^packer \{", ik.PACKER_TEMPLATE.read_text(), re.M)
    proc = packer("validate", "-var", "skip_credential_validation=true", "-var", f"wheelhouse={wheelhouse}",
                  str(ik.PACKER_TEMPLATE.parent), cwd=tmp_path, home=tmp_path)
    assert proc.returncode != 0 and "required_plugins" in proc.stdout + proc.stderr, proc.stdout + proc.stderr


def test_validates_from_any_directory_with_the_default_wheelhouse(tmp_path: Path):
    """No -var at all but the credentials switch, run from an unrelated directory: the scripts and the default
    wheelhouse (the repository's dist/, as `make dist` leaves it) are found relative to the template. Before
    issue 26 the default was relative to the directory packer ran in."""
    require("packer")
    repo = tmp_path / "checkout"
    shutil.copytree(ik.PACKER_TEMPLATE.parent.parent, repo / "integrations")
    dist = repo / "dist/gpuprep-wheelhouse-py3.9"
    dist.mkdir(parents=True)
    (dist / "install.sh").write_text("#!/bin/sh\n")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    template = repo / "integrations/packer" / ik.PACKER_TEMPLATE.name
    proc = packer("validate", "-var", "skip_credential_validation=true", str(template), cwd=elsewhere, home=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    shutil.rmtree(repo / "dist")  # and without make dist's output, the error names the missing wheelhouse
    proc = packer("validate", "-var", "skip_credential_validation=true", str(template), cwd=elsewhere, home=tmp_path)
    assert proc.returncode != 0 and "gpuprep-wheelhouse-py3.9" in proc.stdout + proc.stderr, proc.stdout


def test_a_manifest_post_processor_records_the_ami():
    text = ik.PACKER_TEMPLATE.read_text()
    block = text[text.index('  post-processor "manifest" {'):]
    assert 'output     = "${var.artifacts}/packer-manifest.json"' in block and "strip_path = true" in block


def test_provisioners_in_order():
    steps = ik.packer_provisioners({"wheelhouse": "/w", "artifacts": "/a"})
    scripts = [Path(str(p.attrs["script"])).name for p in steps if "script" in p.attrs]
    assert scripts == ["build-install.sh", "build-doctor.sh", "build-verdict.sh", "build-seal.sh"]
    # gpuprep is installed by the wheelhouse's own install.sh (docs/packaging.md), run where it was uploaded,
    # as root, before any script; nothing else installs it.
    upload = next(i for i, p in enumerate(steps) if p.kind == "file" and p.attrs["source"] == "/w/")
    remote = steps[upload].attrs["destination"]
    install = next(i for i, p in enumerate(steps) if p.attrs.get("inline") == [f"{remote}/install.sh"])
    assert upload < install < next(i for i, p in enumerate(steps) if "script" in p.attrs)
    assert steps[install].attrs["execute_command"] == steps[install + 1].attrs["execute_command"]
    assert "sudo" in str(steps[install].attrs["execute_command"])
    # make dist's, relative to the template
    default = ik.packer_provisioners({})[upload].attrs["source"]
    assert default == f"{ik.PACKER_TEMPLATE.parent}/../../dist/gpuprep-wheelhouse-py3.9/", default
    assert not list(ik.SCRIPTS.glob("install*")), "a second installer beside the wheelhouse's install.sh"
    for p in steps:
        if "script" in p.attrs:
            assert Path(str(p.attrs["script"])).is_file() and os.access(str(p.attrs["script"]), os.X_OK)
    kinds = [(p.kind, p.attrs.get("direction", "")) for p in steps]
    download = kinds.index(("file", "download"))
    verdict = next(i for i, p in enumerate(steps) if str(p.attrs.get("script", "")).endswith("build-verdict.sh"))
    assert download < verdict, "the doctor report is fetched before the verdict can stop the build"
    assert str(steps[-1].attrs["script"]).endswith("build-seal.sh"), "seal is the last provisioner"
