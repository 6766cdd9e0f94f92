"""The package manager's word for an unreachable repository is read, not lost (gpuprep/packages/repo.py; issue 16).

The dnf output below was printed by Debian's dnf 4.14 (the dnf of these machines, the same major as Amazon Linux
2023's) for a repository at http://127.0.0.1:9/ and one at a file:// path that does not exist; the yum 3 lines
are as users report them (yum/yumRepo.py's message, urlgrabber's URL line: yum 3 does not run here). The real dnf
path, through the CLI, is tests/integration/test_install_packages.py.
"""

from __future__ import annotations

from gpuprep.packages.repo import repo_sections, unreachable_repos

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
