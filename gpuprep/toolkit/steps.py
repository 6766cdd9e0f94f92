"""install's toolkit steps: ``dev-char-links`` (legacy mode) and ``cdi-spec`` (CDI modes, Docker's CDI).

- ``dev-char-links``: in legacy mode runc needs ``/dev/char/<major>:<minor>`` links to every NVIDIA device node,
  or containers lose the GPU at a ``systemctl daemon-reload`` (NVIDIA/nvidia-container-toolkit 48, 1227;
  aws/amazon-ecs-ami 483). The links now (``nvidia-ctk system create-dev-char-symlinks --create-all``, on the
  running system) and at every boot: the udev rule Bottlerocket ships (bottlerocket-os/bottlerocket-core-kit
  ``packages/nvidia-container-toolkit/nvidia-gpu-devices.rules``), which runs the same command when the driver
  binds to the PCI bus.
- ``cdi-spec``: where the runtime runs in a CDI mode or Docker's own CDI is on, a spec that fits this host:
  NVIDIA's nvidia-cdi-refresh units (toolkit 1.18+) enabled so it is written at every boot, and on the running
  system a missing or stale ``/var/run/cdi/nvidia.yaml`` written now by the real generator
  (``nvidia-ctk cdi generate``), never by a copy of it. The boot gate runs after nvidia-cdi-refresh.service. Where
  the toolkit is older than 1.18 (no nvidia-cdi-refresh), gpuprep's own oneshot unit runs the same generator at
  every boot, before Docker, ECS and the gate (``toolkit/boot_unit.py``); it is removed where nvidia-cdi-refresh
  exists or no spec is needed.
"""

from __future__ import annotations

from dataclasses import dataclass

from gpuprep.errors import StepFailed
from gpuprep.runner.steps import Applied, Change, Context, Converged, Skip, Step, file_diff
from gpuprep.toolkit import boot_unit, cdi
from gpuprep.toolkit.dev_char import DEV_CHAR_RULE, nvidia_nodes
from gpuprep.toolkit.stack import REFRESH_UNITS, Stack, detect

DEV_CHAR_COMMAND = ["nvidia-ctk", "system", "create-dev-char-symlinks", "--create-all"]
# bottlerocket-os/bottlerocket-core-kit packages/nvidia-container-toolkit/nvidia-gpu-devices.rules, its rule verbatim.
DEV_CHAR_RULE_TEXT = (
    "# Written by gpuprep install (step dev-char-links), as Bottlerocket ships it: /dev/char links to every NVIDIA\n"
    "# device node, made when the driver binds, so containers keep their GPUs across `systemctl daemon-reload`.\n"
    "# This will create /dev/char symlinks to all device nodes\n"
    'ACTION=="add", DEVPATH=="/bus/pci/drivers/nvidia", RUN+="/usr/bin/' + " ".join(DEV_CHAR_COMMAND) + '"\n')
GENERATE = ["nvidia-ctk", "cdi", "generate", f"--output={cdi.GENERATED_SPEC}"]


@dataclass
class ToolkitRun:
    """What the toolkit steps share in one run (``ctx.shared(ToolkitRun)``)."""

    stack: Stack | None = None  # detected once: dev-char-links changes nothing it reads, and cdi-spec comes next


def current_stack(ctx: Context) -> Stack:
    """The stack as it is after docker-runtime and docker-reload (both run before these steps), detected once per
    run: it asks the Engine, reads daemon.json and config.toml and queries the package database."""
    run = ctx.shared(ToolkitRun)
    if run.stack is None:
        run.stack = _detect_stack(ctx)
    return run.stack


def planned_stack(ctx: Context) -> tuple[Stack, str]:
    """The stack the real run's dev-char-links meets: in a dry run whose packages step would install a runtime, the
    mode of that one (the real run installs it before this step), with the words that say so; else as it is now."""
    from dataclasses import replace

    from gpuprep.packages.resolve import TOOLKIT
    from gpuprep.packages.steps import PackagesRun
    from gpuprep.toolkit.config import resolve_mode

    stack = current_stack(ctx)
    sel = ctx.shared(PackagesRun).selection if ctx.dry_run else None
    if sel is None or not sel.to_install:
        return stack, ""
    toolkit = sel.packages.get(TOOLKIT[0])
    if toolkit is not None:
        version = f"{toolkit.evr.version}-{toolkit.evr.release}"
        mode, why = resolve_mode(stack.config.mode, version)
        return replace(stack, toolkit=version, mode=mode, mode_why=why), f" (with {toolkit.nevr}, which packages " \
            "installs first)"
    if sel.stack == "legacy" and stack.config.mode == "auto":
        # nvidia-docker2's runtime needs libnvidia-container before 1.15 (NVIDIA archived that stack with 1.15), so
        # auto resolves to legacy (toolkit internal/info/auto.go: jit-cdi only from 1.18.0).
        return replace(stack, mode="legacy", mode_why="the legacy stack (nvidia-docker2) runs in legacy mode"), \
            " (with the legacy stack packages installs first)"
    return stack, ""


def _detect_stack(ctx: Context) -> Stack:
    from gpuprep.engine.daemon_config import image_engine_version, read_config
    from gpuprep.engine.dockerd import EngineDown, docker_info, find_engine_process

    _, config = read_config(ctx.host, ctx.platform.daemon_json)
    info = None
    if ctx.host.docker_url is not None:
        try:
            info = docker_info(ctx.host)
        except EngineDown:
            info = None
    proc = find_engine_process(ctx.host) if info is not None else None
    version = str((info or {}).get("ServerVersion") or "") or image_engine_version(ctx.host)
    return detect(ctx.host, ctx.platform, daemon_config=config, engine_version=version, info=info,
                  add_runtimes=proc.add_runtimes if proc else None)


@dataclass
class _DevCharPlan:
    """The dev-char-links step's plan: write the udev rule; make the links now (nvidia-ctk, live hosts only)."""

    write_rule: bool
    link: bool


class DevCharLinksStep(Step[_DevCharPlan]):
    id = "dev-char-links"
    title = "legacy mode: /dev/char links to the NVIDIA device nodes now and at every boot (udev rule)"

    def plan(self, ctx: Context) -> Change[_DevCharPlan] | Converged:
        stack, planned = planned_stack(ctx)
        data = {"stack": stack.as_dict()}
        if stack.mode != "legacy":
            return Converged(f"runtime mode {stack.mode}{planned}: the device nodes come in the container's CDI "
                             "edits, no /dev/char links needed", data)
        before = ctx.host.read_text(DEV_CHAR_RULE)
        commands, todo = [], []
        if before != DEV_CHAR_RULE_TEXT:
            # The rule's one line, said: what the udev rule runs and when (the diff has the whole file).
            todo.append(f"write {DEV_CHAR_RULE} (udev: `{' '.join(DEV_CHAR_COMMAND)}` when the nvidia driver binds)"
                        f"{planned}")
        if ctx.host.live:
            missing = _missing_links(ctx)
            if missing:
                if ctx.host.which("nvidia-ctk") is None and not planned:
                    raise StepFailed(f"/dev/char lacks {', '.join(missing)} and nvidia-ctk is not installed to make "
                                     "them (toolkit 1.13+ has it)", "install the toolkit: `gpuprep install --only "
                                     "packages --runtime toolkit`")
                commands.append(list(DEV_CHAR_COMMAND))
                todo.append(f"link {len(missing)} device node(s) in /dev/char")
        if not todo:
            return Converged(f"legacy mode: /dev/char links in place; {DEV_CHAR_RULE} remakes them at boot", data)
        return Change("; ".join(todo), diff=file_diff(DEV_CHAR_RULE, before, DEV_CHAR_RULE_TEXT)
                      if before != DEV_CHAR_RULE_TEXT else "", commands=commands, data=data,
                      payload=_DevCharPlan(write_rule=before != DEV_CHAR_RULE_TEXT, link=bool(commands)))

    def apply(self, ctx: Context, change: Change[_DevCharPlan]) -> Applied:
        if change.payload.write_rule:
            ctx.host.write_atomic(DEV_CHAR_RULE, DEV_CHAR_RULE_TEXT, mode=0o644)
        if change.payload.link:
            ctx.host.run(list(DEV_CHAR_COMMAND), timeout=60,
                         hint="run it by hand to see why; `nvidia-smi` must work first")
        # nvidia-ctk exits 0 having made nothing where it finds no NVIDIA device it knows: proved, not assumed.
        still = _missing_links(ctx) if change.payload.link else []
        if still:
            raise StepFailed(f"`{' '.join(DEV_CHAR_COMMAND)}` ran but /dev/char still lacks {', '.join(still)}",
                             "run it by hand to see why (`nvidia-smi` must work first), then `gpuprep install "
                             "--only dev-char-links` again")
        return Applied()


def _missing_links(ctx: Context) -> list[str]:
    """The /dev/char/MAJOR:MINOR links missing for this host's NVIDIA device nodes."""
    return [f"{a}:{b}" for _, a, b in nvidia_nodes(ctx.host)
            if not ctx.host.lexists(f"/dev/char/{a}:{b}")]


@dataclass
class _CdiSpecPlan:
    """The cdi-spec step's plan: the boot unit's change, then what to run (enable nvidia-cdi-refresh, write the
    spec)."""

    unit: boot_unit.UnitChange
    run: list[list[str]]


class CdiSpecStep(Step[_CdiSpecPlan]):
    id = "cdi-spec"
    title = "CDI modes / Docker CDI: a CDI spec that fits this host, regenerated at every boot (nvidia-cdi-refresh)"

    def plan(self, ctx: Context) -> Change[_CdiSpecPlan] | Converged:
        from gpuprep.services import Services

        stack = current_stack(ctx)
        data = {"stack": stack.as_dict()}
        needed = stack.cdi_mode or bool(stack.docker_cdi) or ctx.install_options.docker_cdi
        unit = self._unit(ctx, stack, needed)
        if not needed and not unit.todo:
            return Converged(f"runtime mode {stack.mode} and Docker's CDI off: no CDI spec needed", data)
        services = Services(ctx.host, ctx.platform)
        run: list[list[str]] = []  # what apply runs, after the unit's own change
        todo: list[str] = []
        if needed and stack.refresh_shipped:
            off = [u for u, state in stack.refresh.items() if state != "enabled"]
            if off:
                run.append(services.argv("enable", off[0])[:-1] + off)
                todo.append(f"enable {', '.join(off)}")
        todo += unit.todo
        if needed and ctx.host.live:
            fresh = self._fresh(ctx, stack)
            if fresh:
                if ctx.host.which("nvidia-ctk") is None:
                    raise StepFailed(f"{fresh}, and nvidia-ctk is not installed to write one",
                                     "install the toolkit: `gpuprep install --only packages --runtime toolkit`")
                run.append(list(GENERATE))
                todo.append(f"write {cdi.GENERATED_SPEC} ({fresh})")
        if not todo:
            if not needed:
                return Converged(f"runtime mode {stack.mode} and Docker's CDI off: no CDI spec needed", data)
            at_boot = "refreshed at boot by nvidia-cdi-refresh" if stack.refresh_enabled else \
                f"written at every boot by {boot_unit.UNIT_NAME}" if ctx.host.lexists(boot_unit.WANTS_LINK) else ""
            return Converged(f"runtime mode {stack.mode}: CDI spec(s) " +
                             (", ".join(s.path for s in stack.specs) or "written at boot") +
                             (f"; {at_boot}" if at_boot else ""), data)
        return Change("; ".join(todo), diff=unit.diff, commands=unit.commands + run, data=data,
                      payload=_CdiSpecPlan(unit, run))

    @staticmethod
    def _unit(ctx: Context, stack: Stack, needed: bool) -> boot_unit.UnitChange:
        """gpuprep's boot unit where a spec is needed, the toolkit has no nvidia-cdi-refresh (before 1.18) and
        systemd starts the host; else none."""
        if ctx.platform.init != "systemd":
            return boot_unit.UnitChange()
        if not needed:
            why_not = "no CDI spec needed"
        elif stack.refresh_shipped:
            why_not = "nvidia-cdi-refresh writes the spec at boot"
        elif stack.toolkit is None:
            return boot_unit.UnitChange()  # no toolkit known (not installed, or no rpm to ask): left as it is
        else:
            why_not = ""
        return boot_unit.plan(ctx.host, ctx.platform, wanted=not why_not, why_not=why_not)

    @staticmethod
    def _fresh(ctx: Context, stack: Stack) -> str:
        """Why the spec must be written now ("" when it fits this host)."""
        from gpuprep.gpu.devices import read_kernel_module

        specs = [s for s in stack.specs if s.kind == cdi.NVIDIA_KIND]
        if not specs:
            return f"no {cdi.NVIDIA_KIND} spec in {', '.join(stack.spec_dirs)}"
        findings, _ = cdi.judge(ctx.host, specs, driver_version=read_kernel_module(ctx.host).version,
                                host_uuids=None)
        return f"{findings[0].spec}: {findings[0].problem}" if findings else ""

    def apply(self, ctx: Context, change: Change[_CdiSpecPlan]) -> Applied:
        unit, run = change.payload.unit, change.payload.run
        boot_unit.apply(ctx.host, ctx.platform, unit)
        for argv in run:
            ctx.host.run(argv, timeout=120, hint="run it by hand to see why; `nvidia-smi` must work first")
        return Applied()


__all__ = ["CdiSpecStep", "DevCharLinksStep", "REFRESH_UNITS", "Skip"]
