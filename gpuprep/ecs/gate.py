"""The boot gate as ecs sees it: whether gpuprep-boot-check.service failed, and so holds ecs.service
(``RequiredBy=ecs.service``, systemd/gpuprep-boot-check.service), and which critical checks failed it.

The gate is ``gpuprep doctor --boot`` under systemd: what it found is in its journal, one invocation of the
unit (``_SYSTEMD_INVOCATION_ID``). doctor writes nothing, so the journal is the record. Starting ecs runs the
gate again (``Requires=`` starts it), so the fix of a held ecs is the failing check's fix, then a start.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from gpuprep.bootcheck import UNIT_NAME
from gpuprep.host import Host
from gpuprep.platform import Platform
from gpuprep.services import Services

# A critical check in doctor's text, either as a line of its own (`[CRIT]  docker-runtime-binary  summary`) or
# in a Nagios status line (`GPUPREP CRITICAL - docker-runtime-binary, gpu-container | ok=24 ...`).
_CHECK_LINE = re.compile(r"\[CRIT\]\s+([a-z0-9]+(?:-[a-z0-9]+)+)")
_STATUS_LINE = re.compile(r"\bGPUPREP CRITICAL\s+-\s+([^|]+)")
_CHECK_ID = re.compile(r"[a-z0-9]+(?:-[a-z0-9]+)+")
JOURNAL_TIMEOUT = 10


@dataclass
class GateState:
    failed: bool = False  # the unit's last run failed (so it holds ecs.service, when installed with the gate)
    checks: list[str] = field(default_factory=list)  # the critical checks its journal names


def critical_checks(text: str) -> list[str]:
    """The ids of the checks ``doctor --boot``'s output says are critical, in order, each once."""
    found: list[str] = []
    for line in text.splitlines():
        status = _STATUS_LINE.search(line)
        ids = _CHECK_ID.findall(status.group(1)) if status else _CHECK_LINE.findall(line)
        found += [i for i in ids if i not in found]
    return found


def gate_state(host: Host, platform: Platform) -> GateState:
    """What the boot gate's last run says (live systemd hosts; a GateState that failed nothing elsewhere)."""
    if not host.live or platform.init != "systemd" or host.which("systemctl") is None:
        return GateState()
    if Services(host, platform).state(UNIT_NAME).active != "failed":
        return GateState()
    shown = host.run(["systemctl", "show", UNIT_NAME, "--property=InvocationID"], check=False, timeout=JOURNAL_TIMEOUT)
    invocation = shown.stdout.strip().partition("=")[2]
    match = [f"_SYSTEMD_INVOCATION_ID={invocation}"] if invocation else ["-b", "-u", UNIT_NAME, "-n", "300"]
    journal = host.run(["journalctl", "--no-pager", "-o", "cat", *match], check=False, timeout=JOURNAL_TIMEOUT)
    return GateState(True, critical_checks(journal.stdout))
