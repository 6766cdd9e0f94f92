"""Platform detection and the platform checks, on every os-release under tests/fixtures/distros.

Real ``distro`` reading real os-release files from a root dir (the same seam as ``--root``).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import FIXTURES

from gpuprep import platform_checks as checks
from gpuprep.host import Host
from gpuprep.options import DoctorOptions
from gpuprep.platform import detect
from gpuprep.report import Status
from gpuprep.runner.checks import Probes, run_check

DISTROS = FIXTURES / "distros"

# name -> (family, major, package_manager, init, rpm, supported)
EXPECTED = {
    "amzn-2018.03": ("amzn", "2018.03", "yum", "upstart", True, True),
    "amzn-2": ("amzn", "2", "yum", "systemd", True, True),
    "amzn-2023": ("amzn", "2023", "dnf", "systemd", True, True),
    "centos-7": ("rhel", "7", "yum", "systemd", True, True),
    "rhel-8": ("rhel", "8", "dnf", "systemd", True, True),
    "almalinux-8": ("rhel", "8", "dnf", "systemd", True, True),
    "rocky-9": ("rhel", "9", "dnf", "systemd", True, True),
    "ubuntu-20.04": ("ubuntu", "20.04", "apt", "systemd", False, True),
    "ubuntu-22.04": ("ubuntu", "22.04", "apt", "systemd", False, True),
    "ubuntu-24.04": ("ubuntu", "24.04", "apt", "systemd", False, True),
    "debian-12": ("unknown", "", "", "systemd", False, False),
    "fedora-40": ("unknown", "", "", "systemd", False, False),
}


def test_every_fixture_distro_has_an_expectation():
    assert sorted(p.name for p in DISTROS.iterdir()) == sorted(EXPECTED)


def probes_for(root: Path, euid: int = 0) -> Probes:
    host = Host(root, euid=euid)
    return Probes(host, detect(host), DoctorOptions())


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_detect(name):
    family, major, manager, init, rpm, supported = EXPECTED[name]
    p = detect(Host(DISTROS / name))
    assert (p.family, p.major, p.package_manager, p.init, p.rpm, p.supported) == (
        family, major, manager, init, rpm, supported)
    if not supported:
        assert p.reason and "not a platform gpuprep supports" in p.reason


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_platform_os_check(name):
    family, _major, _manager, _init, rpm, supported = EXPECTED[name]
    result = run_check(checks.CHECKS[0], probes_for(DISTROS / name))
    assert result.id == "platform-os"
    if not supported:
        assert result.status is Status.UNKNOWN
        assert result.summary.startswith("unknown platform: ") and "not a platform gpuprep supports" in result.summary
        # the image's os-release under --root, not the builder's (issue 26 item 3)
        assert "Amazon Linux" in result.hint
        assert result.fixes[-1].argv == ("cat", str(DISTROS / name / "etc/os-release"))
    elif not rpm:
        assert result.status is Status.OK
        assert "doctor supported; install and seal need an RPM platform" in result.summary
    else:
        assert result.status is Status.OK and "install, seal and doctor supported" in result.summary
    assert result.data["family"] == family


def test_amazon_linux_2023_is_not_2():
    """docs/domain.md: "Amazon Linux release 2023" starts with "Amazon Linux release 2"."""
    p = detect(Host(DISTROS / "amzn-2023"))
    assert p.name == "Amazon Linux 2023" and p.package_manager == "dnf"


def test_no_os_release_is_unknown_not_a_crash(tmp_path):
    result = run_check(checks.CHECKS[0], probes_for(tmp_path))
    assert result.status is Status.UNKNOWN and result.hint


def test_garbled_os_release_is_unknown(tmp_path):
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc/os-release").write_bytes(b"\xff\xfe not=an os-release\n\x00")
    result = run_check(checks.CHECKS[0], probes_for(tmp_path))
    assert result.status is Status.UNKNOWN


def test_running_as_root():
    result = run_check(checks.CHECKS[1], probes_for(DISTROS / "amzn-2023", euid=0))
    assert result.id == "platform-root" and result.status is Status.OK


def test_not_root_says_which_checks_are_limited():
    result = run_check(checks.CHECKS[1], probes_for(DISTROS / "amzn-2023", euid=1000))
    assert result.status is Status.WARNING
    assert "euid 1000" in result.summary
    for words in ("kernel log", "Docker socket", "/var/lib/ecs"):
        assert words in result.summary
    # the same --root (issue 16), as a value (issue 26 item 3)
    assert [f.argv for f in result.fixes] == [("sudo", "gpuprep", "--root", str(DISTROS / "amzn-2023"), "doctor")]
    assert "gpu-xid" in result.data["limited"]


def test_latin1_os_release_is_still_detected(tmp_path):
    """A vendor's VARIANT typed in a Latin-1 terminal: os-release(5) asks for UTF-8, but ID and VERSION_ID
    are ASCII, so the platform is still Amazon Linux 2023 (the variant's bytes read as Latin-1)."""
    (tmp_path / "etc").mkdir()
    good = (DISTROS / "amzn-2023" / "etc/os-release").read_bytes()
    (tmp_path / "etc/os-release").write_bytes(good + b'VARIANT="Soci\xe9t\xe9 G\xe9n\xe9rale"\n')
    p = detect(Host(tmp_path))
    assert (p.family, p.major, p.supported) == ("amzn", "2023", True)


# -- end of support (issue 15, item 8) --------------------------------------------------------------
def test_amazon_linux_2_is_past_end_of_support_with_the_way_out(tmp_path):
    """The fixture host healthy-g5-al2 (Amazon Linux 2, a healthy g5): today (after 2026-06-30) a warning naming
    the date, what ended, and the migration: the AL2023 ECS GPU AMI and Batch's ECS_AL2023_NVIDIA image type."""
    import hosttree

    root = hosttree.build_named("healthy-g5-al2", tmp_path / "root")
    result = run_check(checks.CHECKS[2], probes_for(root))
    assert result.id == "platform-end-of-support"
    assert result.status is Status.WARNING, result.summary
    assert result.summary.startswith("Amazon Linux 2: past end of support since 2026-06-30")
    assert "AWS Batch blocks new AL2 compute environments" in result.summary
    assert "amazon-linux-2023/gpu/recommended" in result.hint and "ECS_AL2023_NVIDIA" in result.hint
    assert result.data["support_end"] == "2026-06-30" and result.data["days_left"] < 0


def test_end_of_support_is_dated():
    from datetime import date

    assert checks.support_status("amzn", "2", date(2024, 1, 1))[0] is Status.OK
    status, summary, data = checks.support_status("amzn", "2", date(2026, 1, 12))
    assert status is Status.WARNING and "end of support on 2026-06-30 (169 days)" in summary
    assert checks.support_status("amzn", "2018.03", date(2026, 1, 1))[0] is Status.WARNING
    assert checks.support_status("amzn", "2023", date(2026, 1, 1)) is None


@pytest.mark.parametrize("name", ["amzn-2023", "rocky-9", "ubuntu-24.04"])
def test_platforms_without_a_published_end_are_skipped(name):
    result = run_check(checks.CHECKS[2], probes_for(DISTROS / name))
    assert result.status is Status.SKIPPED and "no end of support announced" in result.summary
