"""Fixes as values: what a user runs to clear a finding, built where the finding is made.

A ``Fix`` is an argv (never a shell string) with who runs it: the system gpuprep acts on (the live host, or under
``--root`` the image, through ``chroot``, ``--root`` or ``--installroot``), or an instance booted from the image
(a reboot, a module load, a GPU reset cannot act on an image). Each fix has one constructor, so its text exists
once: the general ones here, a domain's own in its room built from these (``gpu/query.py``'s driver fixes,
``engine/checks.py``'s runtime fixes). A constructor returns None where the fix cannot run on this platform
(``gpuprep install`` on Ubuntu exits 3), and the finding offers what can. ``report.py`` renders them: root causes
first, each fix once, at the priority of the findings it clears (docs/contract.md: the ``fixes`` and ``cause`` keys).
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from typing import Any, Literal

from gpuprep.host import Host
from gpuprep.platform import Platform

Runs = Literal["here", "booted"]
HERE: Runs = "here"  # the system gpuprep acts on: the live host, or under --root the image (chroot, --installroot)
BOOTED: Runs = "booted"  # only an instance booted from the image can run it (--root: a reboot, modprobe, a GPU reset)

# The driver's packages as the ECS GPU AMIs lock them (docs/domain.md; aws/amazon-ecs-ami 256), with the kernel
# module's glob narrowed to NVIDIA's: `kmod*` also matches the system's own kmod and kmod-libs packages
# (modprobe itself), which a lock would then hold back from every update. NVIDIA's module packages are
# kmod-nvidia-latest-dkms, kmod-nvidia-open-dkms, kmod-nvidia-<branch>.
DRIVER_GLOBS = ("nvidia*", "kmod-nvidia*", "libnvidia*")


@dataclass(frozen=True)
class Fix:
    """One action that clears a finding: ``why`` says what it does, ``argv`` is the command (empty where the action
    is no command: drain a host, edit a file by hand), ``runs`` who runs it (HERE or BOOTED)."""

    why: str
    argv: tuple[str, ...] = ()
    runs: Runs = HERE
    last: bool = False  # it must come after every other fix (a reboot loads what they changed)

    @property
    def command(self) -> str:
        """The argv as a user types it (each word quoted as the shell needs)."""
        return shlex.join(self.argv)

    @property
    def where(self) -> str:
        """The words that say who runs it, where that is not the system gpuprep acts on."""
        return "on an instance booted from this image" if self.runs == BOOTED else ""

    def text(self) -> str:
        """The fix in one line, as a check's ``hint`` carries it."""
        head = f"{self.why} ({self.where})" if self.where else self.why
        return f"{head}: `{self.command}`" if self.argv else head

    def as_dict(self) -> dict[str, Any]:
        return {"why": self.why, "argv": list(self.argv), "runs": self.runs}


def follows(cause: str, what: str) -> str:
    """The hint of a finding that follows from check ``cause``: fix that first."""
    return f"{what}: fix {cause} first (its fix clears this)"


def hint(fixes: list[Fix]) -> str:
    """The ``hint`` text of a finding whose fixes are values: each fix's line, in order."""
    return "; then ".join(f.text() for f in fixes)


# -- who types it --------------------------------------------------------------------------------------
def as_user(host: Host, argv: list[str], runs: Runs = HERE) -> tuple[str, ...]:
    """``argv`` through sudo where the user is not root: on the live host when this run was not root; on a booted
    instance always (the builder's user says nothing of who logs in there)."""
    if runs == BOOTED or not host.is_root:
        return ("sudo", *argv)
    return tuple(argv)


def running_system(host: Host) -> Runs:
    """Who runs what only a running system can do (a reboot, a module load, a service start): this host, or under
    --root an instance booted from the image."""
    return HERE if host.live else BOOTED


def _in_image(host: Host, argv: list[str]) -> list[str]:
    """``argv`` run inside the image under --root (chroot), as it is on the live host."""
    return argv if host.live else ["chroot", str(host.root), *argv]


# -- the constructors: each fix's text exists here once -------------------------------------------------
def gpuprep(host: Host, platform: Platform, why: str, command: str, *args: str) -> Fix | None:
    """``gpuprep [--root DIR] COMMAND ARGS``; None for install and seal where they cannot run (not an RPM
    platform: they exit 3 there, packages/steps.py PreflightStep)."""
    if command in ("install", "seal") and not platform.rpm:
        return None
    root = [] if host.live else ["--root", str(host.root)]
    return Fix(why, as_user(host, ["gpuprep", *root, command, *args]))


def reboot(host: Host, why: str) -> Fix:
    """A reboot: of this host, or under --root of an instance booted from the image (the builder's reboot would
    change nothing in the image)."""
    runs = running_system(host)
    return Fix(why, as_user(host, ["reboot"], runs), runs, last=True)


def on_running_system(host: Host, why: str, argv: list[str]) -> Fix:
    """A command only the running system answers or acts on (its kernel, its driver, its PCI bus, NVML): this
    host's, or under --root an instance booted from the image's."""
    runs = running_system(host)
    return Fix(why, as_user(host, argv, runs), runs)


def modprobe(host: Host, *modules: str) -> Fix:
    """Load kernel modules: only a running kernel can, so under --root on an instance booted from the image."""
    argv = ["modprobe", *modules] if len(modules) == 1 else ["modprobe", "-a", *modules]
    what = f"the {modules[0]} module" if len(modules) == 1 else f"the modules {', '.join(modules)}"
    return on_running_system(host, f"load {what} into the running kernel", argv)


def gpu_reset(host: Host, index: int) -> Fix:
    """Reset GPU ``index`` (no process may use it): a running driver's act, so under --root on a booted instance."""
    return on_running_system(host, f"drain GPU {index} (no process may use it), then reset it, or reboot",
                             ["nvidia-smi", "-r", "-i", str(index)])


def service(host: Host, platform: Platform, verb: str, name: str, why: str) -> Fix | None:
    """``verb`` on service ``name`` through this platform's init (systemctl, upstart/SysV on Amazon Linux 1). enable
    and disable act on the image (``systemctl --root``, chkconfig through chroot); start, stop and restart need the
    running system, so under --root they are for the booted instance. None where the init has nothing to run."""
    from gpuprep.services import Services

    offline = verb in ("enable", "disable")
    runs = HERE if offline else running_system(host)
    argv = Services(host, platform).argv(verb, name)
    if argv == ["true"]:  # an upstart job its file enables
        return None
    if runs == BOOTED:
        argv = [a for a in argv if not a.startswith("--root=")]
    return Fix(why, as_user(host, argv, runs), runs)


def daemon_reload(host: Host) -> Fix:
    """systemd's units reloaded on the live host, after a unit file or drop-in changed (a booted instance reads them
    as it boots)."""
    return Fix("reload systemd's units", as_user(host, ["systemctl", "daemon-reload"]))


def sysv_log(name: str) -> str:
    """Amazon Linux 1's log of service ``name``: ecs-init logs to its own file, the SysV docker script to
    /var/log/docker."""
    return {"ecs": "/var/log/ecs/ecs-init.log"}.get(name, f"/var/log/{name}")


def service_log(host: Host, platform: Platform, name: str, why: str) -> Fix:
    """Where service ``name`` says why it stopped: its journal, or on Amazon Linux 1 its log file."""
    runs = running_system(host)
    if platform.init != "systemd":
        return Fix(f"{why}: {sysv_log(name)}", runs=runs)
    return Fix(why, as_user(host, ["journalctl", "-u", name, "-n", "50", "--no-pager"], runs), runs)


def kernel_log(host: Host, why: str) -> Fix:
    """This boot's kernel log (the driver's NVRM lines): the running kernel's, so under --root the booted instance's.
    No --grep: journalctl on Amazon Linux 2 (systemd 219) has none."""
    return on_running_system(host, why, ["journalctl", "-k", "-b", "--no-pager"])


def package_manager_args(host: Host, platform: Platform) -> list[str]:
    """The package manager acting on the image: dnf/yum with --installroot, apt-get through chroot."""
    manager = platform.package_manager or "dnf"
    if manager == "apt":
        return _in_image(host, ["apt-get"])
    return [manager] if host.live else [manager, f"--installroot={host.root}"]


def packages(host: Host, platform: Platform, verb: str, names: tuple[str, ...], why: str) -> Fix:
    """``verb`` (install, reinstall, update) of ``names`` with this platform's package manager, acting on the target."""
    manager = package_manager_args(host, platform)
    if platform.package_manager == "apt":
        argv = [*manager, "install", "-y", *(["--reinstall"] if verb == "reinstall" else []), *names]
    else:
        argv = [*manager, verb, "-y", *names]
    return Fix(why, as_user(host, argv))


def lock_driver(host: Host, platform: Platform) -> Fix | None:
    """Lock the driver's packages (dnf/yum versionlock) so a boot-time update cannot replace the driver under the
    loaded module; apt-mark hold where apt is the manager. None where neither is."""
    why = "lock the driver's packages so a boot-time update cannot replace them again (aws/amazon-ecs-ami 256)"
    if platform.package_manager in ("dnf", "yum"):
        # The image's own dnf through chroot, not --installroot: dnf reads its plugins' configuration, and so the
        # lock list, from the machine it runs on even with --installroot (packages/checks.py, _lock_fix).
        argv = _in_image(host, [platform.package_manager, "versionlock", "add", *DRIVER_GLOBS])
        return Fix(why, as_user(host, argv))
    if platform.package_manager == "apt":
        return Fix(why, as_user(host, _in_image(host, ["apt-mark", "hold", "nvidia-driver-*", "libnvidia-*"])))
    return None


def unlock(host: Host, platform: Platform, names: list[str], why: str) -> Fix | None:
    """Lift the version locks on ``names`` (dnf/yum versionlock delete through chroot, as ``lock_driver`` adds them;
    apt-mark unhold where apt is the manager). None where neither is."""
    if platform.package_manager in ("dnf", "yum"):
        return Fix(why, as_user(host, _in_image(host, [platform.package_manager, "versionlock", "delete", *names])))
    if platform.package_manager == "apt":
        return Fix(why, as_user(host, _in_image(host, ["apt-mark", "unhold", *names])))
    return None


def rebuild_initramfs(host: Host, platform: Platform) -> Fix | None:
    """Rebuild the initramfs of the image (its kernel's): dracut on RPM platforms, update-initramfs on dpkg ones."""
    argv = {"rpm": ["dracut", "-f"], "dpkg": ["update-initramfs", "-u"]}.get(platform.package_format)
    if argv is None:
        return None
    return Fix("rebuild the initramfs", as_user(host, _in_image(host, argv)))


def edit_by_hand(path: str, what: str) -> Fix:
    """A file only a person can mend (gpuprep will not guess at it): ``what`` to do in ``path``."""
    return Fix(f"edit {path} by hand: {what}")


def in_image(host: Host, why: str, argv: list[str]) -> Fix:
    """A command of the target's own (its binary, its configuration): through chroot under --root."""
    return Fix(why, as_user(host, _in_image(host, argv)))


def json_tool(host: Host, path: str) -> Fix:
    """Python's JSON parser on a file: it names the line and column of a syntax error."""
    return Fix(f"find the syntax error in {path} (line and column)",
               ("python3", "-m", "json.tool", str(host.path(path))))
