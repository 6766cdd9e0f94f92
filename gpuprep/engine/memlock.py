"""install step ``docker-memlock`` (issue 28, item 5): where EFA is present and nothing gives containers a memlock
limit, daemon.json's ``default-ulimits`` gets ``memlock`` unlimited, every other key kept.

NCCL over EFA registers (pins) its buffers, so a container needs a memlock limit of at least 16 GiB (awslabs' GPU
cluster health check; docs/domain.md "EFA"); unlimited is what the ECS and EKS GPU AMIs give. A limit already set,
in daemon.json or by docker.service's ``LimitMEMLOCK`` (which containers inherit), is the admin's and stays.
The edit goes through daemon_config's plan (read, back up, atomic write) and docker-reload applies it with a
restart: dockerd reads ``default-ulimits`` only at start.
"""

from __future__ import annotations

import re
from copy import deepcopy
from typing import Any

from gpuprep.engine import daemon_config
from gpuprep.engine.steps import DaemonJsonRun, recover_if_interrupted
from gpuprep.host import Host
from gpuprep.report import StepResult
from gpuprep.runner.steps import Applied, Change, Context, Converged, Skip, Step

UNLIMITED = {"Name": "memlock", "Hard": -1, "Soft": -1}
MEMLOCK_MIN = 16 << 30  # bytes: what NCCL over EFA needs at least (awslabs' GPU cluster health check)


def _memlock_bytes(value: Any) -> int | None:
    """A ulimit value as Docker or systemd gives it: -1 / "infinity" / "unlimited" is unlimited; K/M/G suffixes."""
    if value in (-1, "-1") or str(value).lower() in ("infinity", "unlimited"):
        return -1
    m = re.fullmatch(r"(\d+)([KMGT]?)", str(value).strip(), re.I)
    if not m:
        return None
    return int(m.group(1)) << {"": 0, "K": 10, "M": 20, "G": 30, "T": 40}[m.group(2).upper()]


def container_memlock(host: Host, config: dict[str, Any]) -> tuple[int | None, str]:
    """The memlock limit a container gets (bytes, -1 unlimited): daemon.json's default-ulimits, else
    docker.service's LimitMEMLOCK (a container inherits dockerd's through containerd), else None: unset."""
    entry = (config.get("default-ulimits") or {}).get("memlock") if isinstance(config, dict) else None
    if isinstance(entry, dict):
        return _memlock_bytes(entry.get("Soft")), "daemon.json default-ulimits.memlock"
    from gpuprep.services import unit_text

    unit, text = unit_text(host, "docker.service")
    found = re.findall(r"^LimitMEMLOCK=(\S*)", text, re.M)
    if found and found[-1]:  # the last assignment wins; an empty one resets it
        return _memlock_bytes(found[-1].split(":")[0]), f"docker.service LimitMEMLOCK ({unit or 'a drop-in'})"
    return None, "nothing sets it (a container gets the kernel's default, 8 MiB)"


class DockerMemlockStep(Step[daemon_config.DaemonJsonEdit]):
    id = "docker-memlock"
    title = "where EFA is present: daemon.json default-ulimits memlock unlimited, if nothing sets it (keeps keys)"

    def plan(self, ctx: Context) -> Change[daemon_config.DaemonJsonEdit] | Converged:
        from gpuprep.ec2.efa import efa_functions

        found = efa_functions(ctx.host)
        if not found:
            raise Skip("no EFA device on this host: containers need no memlock default")
        path = ctx.platform.daemon_json
        before, config = daemon_config.read_config(ctx.host, path)
        value, source = container_memlock(ctx.host, config)
        if value is not None:
            return Converged(f"containers' memlock is set by {source} ({len(found)} EFA device(s))")
        wanted = deepcopy(config)
        ulimits = wanted.get("default-ulimits")
        wanted["default-ulimits"] = {**(ulimits if isinstance(ulimits, dict) else {}), "memlock": dict(UNLIMITED)}
        after = daemon_config.render(wanted, before)
        edit = daemon_config.DaemonJsonEdit(path, ctx.host.path(path), before, after,
                                            ["set default-ulimits.memlock unlimited (NCCL over EFA pins memory)"])
        run = ctx.shared(DaemonJsonRun)
        run.planned = True
        return Change(edit.summary, diff=edit.diff, data={"efa_devices": len(found), "path": str(edit.real)},
                      payload=edit)

    def apply(self, ctx: Context, change: Change[daemon_config.DaemonJsonEdit]) -> Applied:
        from gpuprep.engine.dockerd import Rollback

        edit = change.payload
        previous = edit.before.encode() if edit.before is not None else None
        run = ctx.shared(DaemonJsonRun)
        mine = not run.changed  # docker-runtime's rollback, when it wrote first, restores the file as the run found it
        if mine:
            # Registered before the write (certbot's reverter.py register_file_creation): a signal once the file is
            # in place still finds what to put back (tests/reliability/test_registered_changes.py).
            run.rollback = Rollback(edit.path, previous)
        backup = daemon_config.apply_edit(ctx.host, edit)
        if mine and run.rollback is not None:
            run.rollback.backup = str(backup) if backup else None
        run.changed = True
        run.restart = True
        return Applied(edit.summary + (f"; backup {backup}" if backup else ""))

    def undo(self, ctx: Context, failed: StepResult) -> str | None:
        return recover_if_interrupted(ctx, failed)
