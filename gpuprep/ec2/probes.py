"""The instance's probes for doctor's checks: the instance type, asked of the instance metadata service once per
run (``ec2/imds.py``). Checks of every room ask it here, never through a checks module (tests/unit/test_layout.py).
"""

from __future__ import annotations

from gpuprep.ec2.imds import InstanceType, read_instance_type
from gpuprep.runner.checks import Probes, probe


@probe
def probe_instance_type(p: Probes) -> InstanceType:
    return read_instance_type(p.host)
