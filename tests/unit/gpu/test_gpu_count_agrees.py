"""install's preflight and doctor count the GPUs of a host the same way (issue 13).

The host is the simulated ``healthy-p5-h100x8`` tree of ``tests/hosttree.py`` (this machine has no GPU):
8 H100 functions (class 0x0302) and 4 NVSwitch bridges (class 0x0680) of vendor 0x10de, as on a p5.48xlarge.
"""

from __future__ import annotations

import re

import hosttree
from contract import json_output
from typer.testing import CliRunner

from gpuprep.cli import app

NO_DOCKER = {"DOCKER_HOST": None}


def test_preflight_and_doctor_both_say_8_on_a_p5(tmp_path):
    root = hosttree.build_named("healthy-p5-h100x8", tmp_path / "p5")
    nvidia = [d for d in (root / "sys/bus/pci/devices").iterdir() if (d / "vendor").read_text().strip() == "0x10de"]
    assert len(nvidia) == 12, "the tree is not the p5 this test is about (8 GPUs and 4 NVSwitches)"

    install = CliRunner().invoke(app, ["--root", str(root), "--json", "install", "--dry-run", "--only", "preflight"],
                                 env=NO_DOCKER)
    preflight = next(s for s in json_output(install.stdout)["steps"] if s["id"] == "preflight")
    said = re.search(r"(\d+) NVIDIA GPU\(s\) on PCI", preflight["summary"])
    assert said and int(said.group(1)) == 8, preflight["summary"]

    doctor = CliRunner().invoke(app, ["--root", str(root), "--json", "doctor", "--no-container"], env=NO_DOCKER)
    pci = next(c for c in json_output(doctor.stdout)["checks"] if c["id"] == "gpu-pci")
    assert pci["status"] == "ok" and pci["summary"].startswith("8 NVIDIA GPU"), pci["summary"]
