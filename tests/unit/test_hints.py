"""Hints are commands of the host they are for (gpuprep/hints.py), and the package manager's word for an
unreachable repository is read, not lost (gpuprep/packages/repo.py; issue 16).

The dnf output below was printed by Debian's dnf 4.14 (the dnf of these machines, the same major as Amazon Linux
2023's) for a repository at http://127.0.0.1:9/ and one at a file:// path that does not exist; the yum 3 lines
are as users report them (yum/yumRepo.py's message, urlgrabber's URL line: yum 3 does not run here).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from gpuprep import hints
from gpuprep.host import Host
from gpuprep.packages.repo import repo_sections, unreachable_repos
from gpuprep.platform import detect

DISTROS = Path(__file__).resolve().parent.parent / "fixtures" / "distros"


def platform(name: str):
    return detect(Host(DISTROS / name))


@pytest.mark.parametrize("text, wanted", [
    ("run `gpuprep install --only packages`", "run `gpuprep --root /img install --only packages`"),
    ("sudo gpuprep doctor", "sudo gpuprep --root /img doctor"),
    ("`gpuprep -v doctor` for the traceback", "`gpuprep --root /img -v doctor` for the traceback"),
    ("`gpuprep --root /img seal`", "`gpuprep --root /img seal`"),  # already there: not twice
    ("gpuprep-boot-check.service failed", "gpuprep-boot-check.service failed"),
    ("`chroot /img pip3 install gpuprep`", "`chroot /img pip3 install gpuprep`"),
    ("/usr/local/bin/gpuprep doctor --boot", "/usr/local/bin/gpuprep doctor --boot"),
])
def test_gpuprep_commands_keep_the_root(text, wanted):
    assert hints.for_target(Host("/img", env={}), text) == wanted
    assert hints.for_target(Host("/", env={}), text) == text


def test_a_root_with_a_space_is_quoted():
    assert hints.gpuprep(Host("/mnt/my image", env={}), "install") == "gpuprep --root '/mnt/my image' install"


@pytest.mark.parametrize("distro, live, euid, wanted", [
    ("amzn-2023", True, 0, "dnf reinstall -y nvidia-container-toolkit-base"),
    ("amzn-2023", True, 1000, "sudo dnf reinstall -y nvidia-container-toolkit-base"),
    ("amzn-2", True, 0, "yum reinstall -y nvidia-container-toolkit-base"),
    ("amzn-2023", False, 0, "dnf --installroot=/img reinstall -y nvidia-container-toolkit-base"),
    ("ubuntu-22.04", True, 0, "apt-get install -y --reinstall nvidia-container-toolkit-base"),
    ("ubuntu-22.04", False, 0, "chroot /img apt-get install -y --reinstall nvidia-container-toolkit-base"),
])
def test_a_reinstall_is_this_platforms_package_manager_in_its_root(distro, live, euid, wanted):
    host = Host("/" if live else "/img", env={}, euid=euid)
    assert hints.package_command(host, platform(distro), "reinstall", "nvidia-container-toolkit-base") == wanted


def test_services_are_started_by_this_platforms_init():
    live = Host("/", env={})
    assert hints.service(live, platform("amzn-2023"), "start", "docker") == "systemctl start docker.service"
    assert hints.service(live, platform("amzn-2018.03"), "start", "docker") == "service docker start"
    assert hints.service_log(live, platform("amzn-2018.03"), "ecs") == "/var/log/ecs/ecs-init.log"
    assert hints.service(Host("/", env={}, euid=1000), platform("amzn-2023"), "start", "ecs") == \
        "sudo systemctl start ecs.service"


def test_a_choice_of_commands_by_platform_keeps_this_platforms():
    from gpuprep.gpu.query import NVML_CAUSES

    mismatch = NVML_CAUSES[18].hint
    assert "(yum on Amazon Linux 2)" in mismatch  # written once for every platform ...
    al2, al2023 = hints.for_platform(platform("amzn-2"), mismatch), hints.for_platform(platform("amzn-2023"), mismatch)
    assert "`sudo yum versionlock add 'nvidia*' 'kmod*' 'libnvidia*'`" in al2 and "dnf" not in al2  # ... said once
    assert "`sudo dnf versionlock add 'nvidia*'" in al2023 and "yum" not in al2023
    nouveau = "rebuild the initramfs (`sudo dracut -f` or `sudo update-initramfs -u`), reboot"
    assert hints.for_platform(platform("rocky-9"), nouveau) == "rebuild the initramfs (`sudo dracut -f`), reboot"
    assert hints.for_platform(platform("ubuntu-24.04"), nouveau) == \
        "rebuild the initramfs (`sudo update-initramfs -u`), reboot"


DNF_SKIPPED = """\
Errors during downloading metadata for repository 'nvidia-container-toolkit':
  - Curl error (7): Couldn't connect to server for http://127.0.0.1:9/rpm/repodata/repomd.xml [Failed to connect to \
127.0.0.1 port 9 after 0 ms: Couldn't connect to server]
Error: Failed to download metadata for repo 'nvidia-container-toolkit': Cannot download repomd.xml: Cannot download \
repodata/repomd.xml: All mirrors were tried
Errors during downloading metadata for repository 'nv-file':
  - Curl error (37): Couldn't read a file:// file for file:///nonexistent/repo/repodata/repomd.xml [Couldn't open file \
/nonexistent/repo/repodata/repomd.xml]
Error: Failed to download metadata for repo 'nv-file': Cannot download repomd.xml: Cannot download \
repodata/repomd.xml: All mirrors were tried
Ignoring repositories: nvidia-container-toolkit, nv-file
"""
DNF_STRICT = ("Error: Failed to download metadata for repo 'nvidia-container-toolkit': Cannot download repomd.xml: "
              "Cannot download repodata/repomd.xml: All mirrors were tried\n")
YUM3 = """\
Loaded plugins: priorities, update-motd, upgrade-helper
http://192.168.1.222:7777/nvidia/repodata/repomd.xml: [Errno 14] PYCURL ERROR 22 - "The requested URL returned \
error: 404 Not Found"
Trying other mirror.
Error: Cannot retrieve repository metadata (repomd.xml) for repository: nvidia-docker. Please verify its path and \
try again
"""


def test_dnf_names_each_unreachable_repository_and_its_url():
    found = unreachable_repos(DNF_SKIPPED)
    assert list(found) == ["nvidia-container-toolkit", "nv-file"]
    assert found["nvidia-container-toolkit"].url == "http://127.0.0.1:9/rpm/repodata/repomd.xml"
    assert found["nvidia-container-toolkit"].error == "Curl error (7): Couldn't connect to server"
    assert found["nv-file"].url == "file:///nonexistent/repo/repodata/repomd.xml"
    strict = unreachable_repos(DNF_STRICT)["nvidia-container-toolkit"]
    assert strict.url == "" and "All mirrors were tried" in strict.error  # the .repo file gives the URL
    assert unreachable_repos("") == {} and unreachable_repos("Last metadata expiration check: 0:00:01 ago\n") == {}


def test_yum3_names_the_repository_and_the_url_it_tried():
    found = unreachable_repos(YUM3)
    assert list(found) == ["nvidia-docker"]
    assert found["nvidia-docker"].url == "http://192.168.1.222:7777/nvidia/repodata/repomd.xml"
    assert "404 Not Found" in found["nvidia-docker"].error


def test_repo_sections_give_each_repositorys_url():
    text = ("[a]\nname=a\nbaseurl=http://127.0.0.1:9/a\n  http://mirror/a\nenabled=1\n\n"
            "[b]\nmirrorlist=https://mirrors/b\n# baseurl=http://no\n")
    assert repo_sections(text) == {"a": "http://127.0.0.1:9/a", "b": "https://mirrors/b"}
