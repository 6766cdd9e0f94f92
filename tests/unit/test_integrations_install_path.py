"""integrations/ installs gpuprep one way: the wheelhouse `make dist` builds and its install.sh (docs/packaging.md),
which links /usr/sbin/gpuprep, the program the boot gate's and doctor timer's units run.

A text check of every file under integrations/: no second installer (a venv or pip of its own, a link in
/usr/local/bin, where sudo's secure_path on RHEL-family hosts does not look), and each tool runs install.sh.
What the lines do is run in simulated instances by tests/system/test_fleet_pipelines.py and test_fleet_ansible.py.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from gpuprep.bootcheck import DEFAULT_PROGRAM

INTEGRATIONS = Path(__file__).resolve().parents[2] / "integrations"
FILES = sorted(p for p in INTEGRATIONS.rglob("*") if p.is_file() and p.suffix != ".pyc")
# What a second installer would write: its own venv, its own pip run, a link where secure_path misses it.
SECOND_INSTALLER = re.compile(r"-m venv|pip install|/usr/local/s?bin/gpuprep|install-wheelhouse")


@pytest.mark.parametrize("path", FILES, ids=[str(p.relative_to(INTEGRATIONS)) for p in FILES])
def test_no_second_installer(path: Path):
    found = [f"{n}: {line.strip()}" for n, line in enumerate(path.read_text().splitlines(), 1)
             if SECOND_INSTALLER.search(line)]
    assert not found, f"{path.relative_to(INTEGRATIONS)} installs gpuprep its own way:\n" + "\n".join(found)


@pytest.mark.parametrize("tool", ["packer/gpuprep-ecs-gpu.pkr.hcl", "aws/gpuprep-imagebuilder-component.yaml",
                                  "aws/gpuprep-run-command.json", "ansible/roles/gpuprep/tasks/main.yml"])
def test_each_tool_runs_the_wheelhouse_install_sh_and_usr_sbin_gpuprep(tool: str):
    text = (INTEGRATIONS / tool).read_text()
    assert "/install.sh" in text, tool
    if tool.startswith("ansible/"):
        text = (INTEGRATIONS / "ansible/roles/gpuprep/defaults/main.yml").read_text()
        assert f"gpuprep_executable: {DEFAULT_PROGRAM}\n" in text
    elif tool.startswith("packer/"):
        text = "".join((INTEGRATIONS / "scripts" / s).read_text() for s in ("build-install.sh", "build-doctor.sh",
                                                                           "build-seal.sh"))
        assert text.count(f"${{GPUPREP:-{DEFAULT_PROGRAM}}}") == 3, text
    else:
        assert DEFAULT_PROGRAM in text, tool

