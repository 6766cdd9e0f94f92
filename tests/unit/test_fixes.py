"""Fixes as values (gpuprep/fixes.py; issue 26 item 3, issue 27 item 5): built for the platform and the target.

The platforms are the os-release fixtures of tests/fixtures/distros (python-distro reads them as on a real host);
nothing runs here: these are the values a finding carries, checked for where and how they would run.
"""

from __future__ import annotations

import fnmatch
from pathlib import Path

import pytest

from gpuprep import fixes
from gpuprep.host import Host
from gpuprep.platform import Platform, detect

DISTROS = Path(__file__).resolve().parent.parent / "fixtures" / "distros"
LIVE, IMAGE = Host("/", env={}, euid=0), Host("/img", env={}, euid=0)


def platform(name: str) -> Platform:
    return detect(Host(DISTROS / name))


@pytest.mark.parametrize("distro, host, wanted", [
    ("amzn-2023", LIVE, ["dnf", "versionlock", "add"]),
    ("amzn-2", LIVE, ["yum", "versionlock", "add"]),
    # dnf reads its plugins' configuration (the lock list) from the machine it runs on even with --installroot:
    # the image's own dnf, through chroot.
    ("amzn-2023", IMAGE, ["chroot", "/img", "dnf", "versionlock", "add"]),
])
def test_the_driver_lock_is_this_platforms_manager_acting_on_the_target(distro, host, wanted):
    lock = fixes.lock_driver(host, platform(distro))
    assert lock is not None and list(lock.argv[:len(wanted)]) == wanted and lock.runs == fixes.HERE
    assert "(yum on Amazon Linux 2)" not in lock.text()


def test_the_driver_lock_glob_holds_nvidias_module_packages_not_the_systems_kmod():
    """dnf's and yum's versionlock match a package's name against each entry's glob (fnmatch). The ECS AMI's
    `kmod*` also holds kmod and kmod-libs, the system's module tools, back from every update."""
    lock = fixes.lock_driver(LIVE, platform("amzn-2023"))
    assert lock is not None
    globs = lock.argv[3:]
    held = [name for name in ("kmod", "kmod-libs", "kmod-nvidia-latest-dkms", "kmod-nvidia-open-dkms",
                              "nvidia-driver", "libnvidia-ml", "nvidia-container-toolkit")
            if any(fnmatch.fnmatchcase(name, g) for g in globs)]
    assert held == ["kmod-nvidia-latest-dkms", "kmod-nvidia-open-dkms", "nvidia-driver", "libnvidia-ml",
                    "nvidia-container-toolkit"]


@pytest.mark.parametrize("make", [
    lambda h: fixes.reboot(h, "reboot"),
    lambda h: fixes.modprobe(h, "nvidia"),
    lambda h: fixes.gpu_reset(h, 3),
])
def test_what_only_a_running_kernel_does_is_marked_for_the_booted_instance_under_root(make):
    on_image, here = make(IMAGE), make(LIVE)
    assert on_image.runs == fixes.BOOTED and "on an instance booted from this image" in on_image.text()
    assert on_image.argv[0] == "sudo"  # whoever logs in there
    assert here.runs == fixes.HERE and here.argv[0] != "sudo" and "booted" not in here.text()  # root, live


def test_gpuprep_install_is_offered_only_where_it_runs():
    """install and seal exit 3 off RPM platforms (packages/steps.py PreflightStep): never offered there."""
    assert fixes.gpuprep(LIVE, platform("ubuntu-22.04"), "x", "install", "--only", "ecs-config") is None
    assert fixes.gpuprep(LIVE, platform("ubuntu-22.04"), "x", "seal") is None
    on_image = fixes.gpuprep(IMAGE, platform("amzn-2023"), "x", "install", "--only", "ecs-config")
    assert on_image is not None and on_image.argv == ("gpuprep", "--root", "/img", "install", "--only", "ecs-config")
    assert fixes.gpuprep(Host("/", env={}, euid=1000), platform("amzn-2023"), "x", "install").argv[0] == "sudo"


@pytest.mark.parametrize("distro, wanted", [("rocky-9", ("dracut", "-f")),
                                            ("ubuntu-24.04", ("update-initramfs", "-u"))])
def test_the_initramfs_is_rebuilt_by_this_platforms_tool_inside_the_image(distro, wanted):
    assert fixes.rebuild_initramfs(LIVE, platform(distro)).argv == wanted
    assert fixes.rebuild_initramfs(IMAGE, platform(distro)).argv == ("chroot", "/img", *wanted)


def test_a_fix_is_an_argv_shown_quoted_and_serialised_as_such():
    fix = fixes.Fix("find it", ("grep", "-r", "a b", "/etc"))
    assert fix.command == "grep -r 'a b' /etc" and fix.text() == "find it: `grep -r 'a b' /etc`"
    assert fix.as_dict() == {"why": "find it", "argv": ["grep", "-r", "a b", "/etc"], "runs": "here"}


@pytest.mark.parametrize("distro, host, wanted", [
    ("amzn-2023", LIVE, ("dnf", "reinstall", "-y", "nvidia-container-toolkit-base")),
    ("amzn-2023", Host("/", env={}, euid=1000), ("sudo", "dnf", "reinstall", "-y", "nvidia-container-toolkit-base")),
    ("amzn-2", LIVE, ("yum", "reinstall", "-y", "nvidia-container-toolkit-base")),
    ("amzn-2023", IMAGE, ("dnf", "--installroot=/img", "reinstall", "-y", "nvidia-container-toolkit-base")),
    ("ubuntu-22.04", LIVE, ("apt-get", "install", "-y", "--reinstall", "nvidia-container-toolkit-base")),
    ("ubuntu-22.04", IMAGE, ("chroot", "/img", "apt-get", "install", "-y", "--reinstall",
                             "nvidia-container-toolkit-base")),
])
def test_a_reinstall_is_this_platforms_package_manager_in_its_target(distro, host, wanted):
    assert fixes.packages(host, platform(distro), "reinstall", ("nvidia-container-toolkit-base",), "x").argv == wanted


def test_a_root_with_a_space_is_one_word():
    fix = fixes.gpuprep(Host("/mnt/my image", env={}, euid=0), platform("amzn-2023"), "x", "install")
    assert fix is not None and fix.command == "gpuprep --root '/mnt/my image' install"


def test_services_start_on_the_booted_instance_and_are_enabled_in_the_image():
    p = platform("amzn-2023")
    start = fixes.service(IMAGE, p, "start", "ecs", "x")
    enable = fixes.service(IMAGE, p, "enable", "ecs", "x")
    assert start is not None and start.argv == ("sudo", "systemctl", "start", "ecs.service") and start.runs == "booted"
    assert enable is not None and enable.argv == ("systemctl", "--root=/img", "enable", "ecs.service")
    assert enable.runs == "here"
