"""install step ``docker-memlock`` (issue 28, item 5): where EFA is present and nothing gives containers a memlock
limit, daemon.json's ``default-ulimits`` gets ``memlock`` unlimited, every other key kept.

NCCL over EFA registers (pins) its buffers, so a container needs a memlock limit of at least 16 GiB (awslabs' GPU
cluster health check; docs/domain.md "EFA"); unlimited is what the ECS and EKS GPU AMIs give. A limit already set,
in daemon.json or by docker.service's ``LimitMEMLOCK`` (which containers inherit), is the admin's and stays.
The edit goes through daemon_config's plan (read, back up, atomic write) and docker-reload applies it with a
restart: dockerd reads ``default-ulimits`` only at start.
"""

from __future__ import annotations

from copy import deepcopy

from gpuprep.engine import daemon_config
from gpuprep.engine.steps import DaemonJsonRun, recover_if_interrupted
from gpuprep.report import StepResult
from gpuprep.runner.steps import Applied, Change, Context, Converged, Skip, Step

UNLIMITED = {"Name": "memlock", "Hard": -1, "Soft": -1}


class DockerMemlockStep(Step):
    id = "docker-memlock"
    title = "where EFA is present: daemon.json default-ulimits memlock unlimited, if nothing sets it (keeps keys)"

    def plan(self, ctx: Context) -> Change | Converged:
        from gpuprep.ec2.host_checks import container_memlock, efa_functions

        found = efa_functions(ctx.host)
        if not found:
            raise Skip("no EFA device on this host: containers need no memlock default")
        path = ctx.platform.daemon_json
        before, config = daemon_config.read_config(ctx.host, path)
        value, source = container_memlock(ctx.host, config)
        if value is not None:
            return Converged(f"containers' memlock is set by {source} ({len(found)} EFA device(s))")
        wanted = deepcopy(config)
        ulimits = wanted.get("default-ulimits") if isinstance(wanted.get("default-ulimits"), dict) else {}
        wanted["default-ulimits"] = {**ulimits, "memlock": dict(UNLIMITED)}
        after = daemon_config.render(wanted, before)
        edit = daemon_config.DaemonJsonEdit(path, ctx.host.path(path), before, after,
                                            ["set default-ulimits.memlock unlimited (NCCL over EFA pins memory)"])
        run = ctx.shared(DaemonJsonRun)
        run.planned = True
        return Change(edit.summary, diff=edit.diff, data={"efa_devices": len(found), "path": str(edit.real)},
                      payload=edit)

    def apply(self, ctx: Context, change: Change) -> Applied:
        from gpuprep.engine.dockerd import Rollback

        edit: daemon_config.DaemonJsonEdit = change.payload
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
