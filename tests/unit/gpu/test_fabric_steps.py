"""install's fabric-manager step on the p5 host tree and elsewhere.

Real: `systemctl --root` (enables the unit in the tree, as on an image), the tree's files, the step runner in
dry-run and real mode, twice. SIMULATED (no EC2 or NVSwitch here): the instance metadata, a stand-in HTTP server on
127.0.0.1 (tests/imds_standin.py) naming the type, and the p5 tree (tests/hosttree.py) with fabric manager's unit
file as NVIDIA's package installs it.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import hosttree
import imds_standin
import pytest
from conftest import require

from gpuprep.ec2.imds import ENDPOINT_ENV
from gpuprep.gpu.fabric_checks import WANTS_LINK
from gpuprep.gpu.fabric_steps import FabricManagerStep
from gpuprep.host import Host
from gpuprep.install import install_steps
from gpuprep.options import InstallOptions
from gpuprep.platform import detect
from gpuprep.report import StepStatus
from gpuprep.runner.steps import Context, run_steps

pytestmark = pytest.mark.allow_subp("systemctl", "rpm")
UNIT = "/usr/lib/systemd/system/nvidia-fabricmanager.service"
FM_UNIT = "[Unit]\nDescription=NVIDIA fabric manager service\n\n[Service]\nType=forking\n" \
          "ExecStart=/usr/bin/nv-fabricmanager -c /usr/share/nvidia/nvswitch/fabricmanager.cfg\n\n" \
          "[Install]\nWantedBy=multi-user.target\n"


@pytest.fixture
def imds():
    servers = []

    def serve(instance_type: str):
        servers.append(imds_standin.serve(instance_type))
        return servers[-1].url

    yield serve
    for s in servers:
        s.close()


def tree(tmp_path: Path, installed: bool = True) -> Path:
    """The p5 tree with fabric manager's unit installed (or not) and not enabled."""
    spec = hosttree.load_spec("healthy-p5-h100x8")
    files = {k: v for k, v in spec.files.items() if k != UNIT} | ({UNIT: FM_UNIT} if installed else {})
    links = {k: v for k, v in spec.links.items() if k != WANTS_LINK}
    return hosttree.build(tmp_path / "root", dataclasses.replace(spec, files=files, links=links,
                                                                 instance_type="p5.48xlarge"))


def run(root: Path, url: str, dry_run: bool = False):
    host = Host(root, env={ENDPOINT_ENV: url, "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"})
    ctx = Context(host, detect(host), InstallOptions(dry_run=dry_run))
    return run_steps(ctx, "install", [FabricManagerStep()]).steps[0]


def test_enables_an_installed_fabric_manager_on_an_nvswitch_type_once(tmp_path, imds):
    require("systemctl")
    root, url = tree(tmp_path), imds("p5.48xlarge")
    dry = run(root, url, dry_run=True)
    assert dry.status is StepStatus.PLANNED and not (root / WANTS_LINK.lstrip("/")).is_symlink()
    assert dry.commands == [["systemctl", f"--root={root.resolve()}", "enable", "nvidia-fabricmanager.service"]]
    real = run(root, url)
    assert real.status is StepStatus.CHANGED, real.summary
    assert (root / WANTS_LINK.lstrip("/")).is_symlink()
    again = run(root, url)
    assert again.status is StepStatus.OK and again.summary == "p5.48xlarge: nvidia-fabricmanager enabled"


def test_skips_without_nvswitch_or_without_the_package(tmp_path, imds):
    g6 = run(tree(tmp_path / "a"), imds("g6.xlarge"))
    assert g6.status is StepStatus.SKIPPED and g6.summary == "g6.xlarge: no NVSwitch"
    missing = run(tree(tmp_path / "b", installed=False), imds("p5.48xlarge"))
    assert missing.status is StepStatus.SKIPPED and "nvidia-fabricmanager is not installed" in missing.summary


def test_the_step_comes_before_gpu_check():
    ids = [s.id for s in install_steps()]
    assert ids.index("fabric-manager") < ids.index("gpu-check")
