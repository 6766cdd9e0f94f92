"""install's first step, its gate: root, a supported RPM platform, an NVIDIA GPU (a warning only), the driver against
its branch's security floor, the package manager's lock.

Its own module, above the rooms it asks (gpu/ for the PCI bus and the driver, packages/ for the package manager), so
that neither room imports the other for it (tests/unit/test_layout.py).
"""

from __future__ import annotations

from gpuprep.errors import BadInput, PreconditionUnmet
from gpuprep.gpu.devices import read_pci
from gpuprep.packages.lock import lock_holder
from gpuprep.packages.steps import backend
from gpuprep.platform import OS_RELEASE_HINT
from gpuprep.report import Status
from gpuprep.runner.checks import Verdict
from gpuprep.runner.steps import Context, Converged, Step


def _driver_floor(ctx: Context) -> Verdict | None:
    """doctor's driver-security verdict when the driver is below its branch's security floor, else None: install
    does not update the driver (a reboot and the image's versionlock are the admin's call), it says so."""
    from gpuprep.gpu.devices import read_kernel_module, read_userland
    from gpuprep.gpu.security import assess_driver

    try:
        verdict = assess_driver(ctx.host, ctx.platform, read_kernel_module(ctx.host).version,
                                read_userland(ctx.host).version)
    except OSError:
        return None
    return verdict if verdict is not None and verdict.status is not Status.OK else None


class PreflightStep(Step[None]):
    id = "preflight"
    title = "root, a supported RPM platform, an NVIDIA GPU (warning only), the package manager lock free"
    gate = True

    def plan(self, ctx: Context) -> Converged:
        notes: list[str] = []
        if not ctx.host.is_root:
            if not ctx.dry_run:
                raise PreconditionUnmet("install must run as root", "run it with sudo (or as root in user-data)")
            notes.append("not root (dry run only)")
        p = ctx.platform
        if p.broken:
            raise BadInput(p.reason, OS_RELEASE_HINT)
        if not p.rpm:
            raise PreconditionUnmet(
                p.reason if p.family == "unknown" and p.reason else
                f"{p.name or 'this system'} is not a platform gpuprep install supports",
                "install supports Amazon Linux 1, 2 and 2023 and RHEL/CentOS/Rocky/AlmaLinux 7-9",
            )
        # The same reader as doctor's gpu-pci: GPU functions only (class display/3D), not the NVSwitch
        # bridges or HDMI audio functions of the same vendor (a p5 has 8 GPUs and 4 NVSwitches).
        try:
            gpus = read_pci(ctx.host).gpus
        except OSError as exc:
            gpus = []
            notes.append(f"warning: cannot read the PCI bus ({exc.strerror})")
        if gpus:
            notes.append(f"{len(gpus)} NVIDIA GPU(s) on PCI")
        else:
            notes.append("warning: no NVIDIA GPU on PCI (fine when building an image on a non-GPU instance)")
        driver = _driver_floor(ctx)
        if driver is not None:
            notes.append(f"warning: {driver.summary}; {driver.hint}")
        if not any(ctx.selected(step) for step in (self.id, "repositories", "packages")):
            # `--only docker-runtime` on an image built where no dnf or yum runs (Packer on Ubuntu, the real-GPU
            # script): nothing selected asks the package manager, so its absence is no precondition.
            summary = f"{p.name}; no package step selected: the package manager is not needed; " + "; ".join(notes)
            return Converged(summary, data={"gpus": gpus, "package_manager": None, "root": ctx.host.is_root})
        b = backend(ctx)
        # A plan waits for nobody: it says who holds the lock. The packages step waits for it (bounded) right
        # before its transaction, the one thing that needs it; a converged host never waits at all.
        holder = lock_holder(ctx.host, p.package_locks)
        if holder is not None:
            notes.append(f"the package manager lock is held by {holder} (the packages step waits for it)")
        summary = f"{p.name}, {b.manager}; " + "; ".join(notes)
        return Converged(summary, data={"gpus": gpus, "package_manager": b.manager, "root": ctx.host.is_root,
                                        **({"driver_security": driver.data} if driver is not None else {})})
