"""The yum 3 backend (Amazon Linux 1 and 2, RHEL 7): argv, and parsing of repoquery / rpm output.

yum 3 cannot run on this Debian machine (no yum 3 package; it needs Python 2). Simulated, and where
the text comes from:
- REPOQUERY_OUT is NOT a recording from a live yum: it is built to the format of yum-utils
  ``repoquery.py`` (``pkgQuery.fmt_requires`` etc. return ``"\\n".join`` of ``prco`` strings,
  formatted by ``rpmUtils.miscutils.formatRequire``: ``name op [epoch:]version-release``, rpmlib()
  entries dropped), with package data from DOMAIN.md (Amazon Linux 1 docker and nvidia-docker2 pins).
  It should be replaced by a real recording from an Amazon Linux 2 host
  (`repoquery -q --show-duplicates --qf '<REPOQUERY_QF>' docker ecs-init nvidia-docker2`).
- The rpm -q path is shared with dnf and runs for real in tests/integration.
"""

from __future__ import annotations

from pathlib import Path

from gpuprep.host import Host
from gpuprep.packages.repo import FIELD, RECORD, YumBackend, lock_entry, lock_name, parse_records
from gpuprep.packages.resolve import Selection, resolve
from gpuprep.platform import detect

FIX = Path(__file__).resolve().parent.parent / "fixtures" / "distros"


def rec(*fields: str) -> str:
    return FIELD.join(fields) + RECORD


REPOQUERY_OUT = "".join([
    rec("docker", "0", "18.06.1ce", "7.25.amzn1", "x86_64", "libseccomp >= 2.3\n/bin/sh",
        "docker = 18.06.1ce-7.25.amzn1", "", "", "amzn-updates"),
    rec("docker", "0", "18.06.1ce", "8.28.amzn1", "x86_64", "libseccomp >= 2.3", "docker = 18.06.1ce-8.28.amzn1",
        "", "", "amzn-updates"),
    rec("ecs-init", "0", "1.22.0", "4.amzn1", "x86_64", "docker >= 17.06.2ce\nupstart", "ecs-init = 1.22.0-4.amzn1",
        "", "", "amzn-updates"),
    rec("nvidia-docker2", "0", "2.0.3", "1.docker18.06.1.ce.amzn1", "noarch",
        "docker = 18.06.1ce-7.25.amzn1\nnvidia-container-runtime = 2.0.0-1.docker18.06.1.amzn1",
        "nvidia-docker2 = 2.0.3-1.docker18.06.1.ce.amzn1", "", "", "nvidia-docker"),
    rec("nvidia-container-runtime", "0", "2.0.0", "1.docker18.06.1.amzn1", "x86_64", "",
        "nvidia-container-runtime = 2.0.0-1.docker18.06.1.amzn1", "", "", "nvidia-container-runtime"),
]) + "\n"


def backend(root: str | Path, distro: str = "amzn-2") -> YumBackend:
    host = Host(root)
    return YumBackend(host, detect(host), "yum")


def test_argv_inside_a_root(tmp_path: Path) -> None:
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc/os-release").write_text((FIX / "amzn-2/etc/os-release").read_text())
    b = backend(tmp_path)
    q = b.query_argv(["docker", "ecs-init"])
    assert q[:2] == ["repoquery", "-q"]
    assert f"--installroot={tmp_path}" in q and f"--setopt=reposdir={tmp_path}/etc/yum.repos.d" in q
    assert "--releasever=2" in q and "--show-duplicates" in q and q[-2:] == ["docker", "ecs-init"]
    pkgs = resolve(parse_records(REPOQUERY_OUT), [], stack="legacy")
    assert isinstance(pkgs, Selection)
    inst = b.install_argv(list(pkgs.packages.values()))
    assert inst[:3] == ["yum", "-y", "-q"] and "--disableplugin=versionlock" in inst
    assert inst[-4:] == ["ecs-init-1.22.0-4.amzn1.x86_64", "docker-18.06.1ce-7.25.amzn1.x86_64",
                         "nvidia-docker2-2.0.3-1.docker18.06.1.ce.amzn1.noarch",
                         "nvidia-container-runtime-2.0.0-1.docker18.06.1.amzn1.x86_64"]
    assert b.lock_list == "/etc/yum/pluginconf.d/versionlock.list"


def test_parse_and_release_pin() -> None:
    pkgs = parse_records(REPOQUERY_OUT)
    assert [p.nevr for p in pkgs][:2] == ["docker-18.06.1ce-7.25.amzn1", "docker-18.06.1ce-8.28.amzn1"]
    assert [str(d) for d in pkgs[0].requires] == ["libseccomp >= 2.3"]  # file deps are rpm's business
    sel = resolve(pkgs, [], stack="legacy")
    # nvidia-docker2 pins docker's release: the newer Amazon rebuild -8.28 is passed over (NVIDIA issue 945).
    assert sel.as_dict()["docker"] == "docker-18.06.1ce-7.25.amzn1"


def test_lock_entries_yum_format() -> None:
    p = parse_records(REPOQUERY_OUT)[0]
    assert lock_entry(p, "yum") == "0:docker-18.06.1ce-7.25.amzn1.*"
    assert lock_name("0:docker-18.06.1ce-7.25.amzn1.*") == "docker"
    assert lock_name("nvidia-container-toolkit-0:1.17.8-1.*") == "nvidia-container-toolkit"
    assert lock_name("# comment") is None
