"""The yum 3 backend (Amazon Linux 1 and 2, RHEL 7): argv, and parsing of what yum 3 prints.

yum 3 cannot run on this Debian machine (no yum 3 package; it needs Python 2). What is RECORDED and what is
SYNTHESISED, exactly:
- RECORDED (tests/fixtures/yum3/, each file names its source): yum 3's dependency errors from real
  ``yum install nvidia-docker2`` runs on Amazon Linux 1 and CentOS 7 (NVIDIA/nvidia-docker issues 870, 916),
  and a real ``/etc/yum/pluginconf.d/versionlock.list`` (hercules-team/augeas issue 553). They test what
  gpuprep reads of yum 3 directly: the lock list, the failed-transaction message, and the dependency strings,
  which yum prints with the same function (``yum.misc.prco_tuple_to_string``) that fills repoquery's
  ``%{requires}``/``%{provides}`` (yum-utils repoquery.py ``repoPkgQuery.prco``).
- SYNTHESISED, not recorded: REPOQUERY_OUT. gpuprep asks yum-utils ``repoquery`` for its own ``--qf``
  (REPOQUERY_QF), which no published output uses, so no recording of it can exist. It is built to that
  format as repoquery.py produces it (``fmt_requires`` etc. return ``"\\n".join`` of sorted prco strings,
  rpmlib() entries dropped, epoch 0 omitted), with package data from docs/domain.md (Amazon Linux 1 docker and
  nvidia-docker2 pins). Replace it with a recording from an Amazon Linux 2 host when one is at hand:
  ``repoquery -q --show-duplicates --qf '<REPOQUERY_QF>' docker ecs-init nvidia-docker2``.
- SIMULATED: a stand-in ``yum`` executable that prints a recorded error and exits 1, to drive
  ``YumBackend.install``'s failure path (the real yum 3 is what this machine lacks).
- The rpm -q path is shared with dnf and runs for real in tests/integration.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from conftest import FIXTURES

from gpuprep.errors import StepFailed
from gpuprep.host import Host
from gpuprep.packages.evr import EVR
from gpuprep.packages.repo import YumBackend, dependency_errors, lock_entries, lock_entry, lock_name
from gpuprep.packages.resolve import Package, Selection, resolve
from gpuprep.packages.rpmdb import FIELD, RECORD, parse_deps, parse_records
from gpuprep.platform import detect

pytestmark = pytest.mark.allow_subp('yum')

FIX = FIXTURES / "distros"
YUM3 = FIXTURES / "yum3"


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


# -- recorded yum 3 output -----------------------------------------------------------------------------
def recording(name: str) -> str:
    """A recording without our own header lines (those start with "#"; yum's lines never do)."""
    return "".join(line for line in (YUM3 / name).read_text().splitlines(True) if not line.startswith("#"))


def amzn2_root(tmp_path: Path) -> Path:
    (tmp_path / "etc").mkdir(parents=True)
    (tmp_path / "etc/os-release").write_text((FIX / "amzn-2/etc/os-release").read_text())
    return tmp_path


def test_recorded_lock_list_is_read_and_matches_what_gpuprep_writes(tmp_path: Path) -> None:
    root = amzn2_root(tmp_path)
    lock_list = root / "etc/yum/pluginconf.d/versionlock.list"
    lock_list.parent.mkdir(parents=True)
    shutil.copy(YUM3 / "versionlock.list", lock_list)  # verbatim: the plugin skips "#" lines, so do we
    b = backend(root)
    assert b.lock_list == "/etc/yum/pluginconf.d/versionlock.list"
    assert b.locks() == ["0:vasclnt-4.1.5-23233.*", "0:vasgp-4.1.5-23233.*"]
    assert [lock_name(e) for e in b.locks()] == ["vasclnt", "vasgp"]
    held = Package("vasclnt", EVR("4.1.5", "23233"), "x86_64")
    newer = Package("vasgp", EVR("4.1.6", "1"), "x86_64")
    # gpuprep's own entry for the locked version is byte for byte the plugin's (E:N-V-R.*, epoch 0 written).
    assert lock_entry(held, "yum") == "0:vasclnt-4.1.5-23233.*"
    assert b.unlocked([held, newer]) == [newer]
    assert b.stale_locks([newer]) == ["0:vasgp-4.1.5-23233.*"]


def test_versionlock_list_command_output_yields_the_same_entries() -> None:
    """SYNTHESISED around recorded lines: ``yum versionlock list`` prints the file's lines between yum's
    "Loaded plugins: ..." banner and the plugin's "versionlock list done" (yum-utils versionlock.py)."""
    output = ("Loaded plugins: extras_suggestions, langpacks, priorities, update-motd, versionlock\n"
              + recording("versionlock.list") + "versionlock list done\n")
    assert lock_entries(output) == ["0:vasclnt-4.1.5-23233.*", "0:vasgp-4.1.5-23233.*"]


RECORDED_ERRORS = {
    "nvidia-docker-870-al1-install-error.txt": [
        "nvidia-docker2-2.0.3-1.docker18.06.1.ce.amzn1.noarch requires docker = 18.06.1ce "
        "(installed: docker-17.12.1ce-1.135.amzn1.x86_64)"],
    "nvidia-docker-916-centos7-install-error.txt": [
        "nvidia-docker2-2.0.3-1.docker18.09.2.noarch requires docker = 2:18.09.2"],
    "nvidia-docker-916-centos7-docker-ce-error.txt": [
        "nvidia-docker2-2.0.3-1.docker18.09.2.ce.noarch requires docker-ce = 3:18.09.2 "
        "(installed: 3:docker-ce-18.09.3-3.el7.x86_64)"],
}


@pytest.mark.parametrize("name", sorted(RECORDED_ERRORS))
def test_recorded_dependency_errors_are_summarised(name: str) -> None:
    assert dependency_errors(recording(name)) == RECORDED_ERRORS[name]


@pytest.mark.parametrize("name", sorted(RECORDED_ERRORS))
def test_rpm_semantics_agree_with_yum_3s_real_verdicts(name: str) -> None:
    """yum 3 listed every Installed/Available provider as not satisfying the Requires; gpuprep's Dep (parsed by
    the same parse_deps that reads repoquery's %{requires}) must reject each of them too."""
    text = recording(name)
    required = [line.split("Requires: ", 1)[1] for line in text.splitlines() if "Requires: " in line]
    provided = [line.strip() for line in text.splitlines() if line.startswith("               ")]
    [req] = parse_deps("\n".join(required))
    provides = parse_deps("\n".join(provided))
    assert len(provides) == len(provided) >= 1
    for p in provides:
        assert p.name == req.name and p.op == "="
        assert not req.matches(p.evr), f"{req} should not accept {p}"
    # And the pin is release-less: it would have accepted any release of the pinned version, as yum does.
    assert req.matches(EVR(req.evr.version, "99.some.rebuild", req.evr.epoch))


def test_install_failure_names_the_requirement(tmp_path: Path) -> None:
    """SIMULATED yum 3 (absent here): a stand-in that prints the recorded AL1 error, as yum does, and exits 1."""
    root = amzn2_root(tmp_path / "root")
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "yum").write_text(f"#!/bin/sh\ncat '{YUM3 / 'nvidia-docker-870-al1-install-error.txt'}' >&2\nexit 1\n")
    os.chmod(fake / "yum", 0o755)
    host = Host(root, env={**os.environ, "PATH": f"{fake}:{os.environ.get('PATH', '')}"})
    b = YumBackend(host, detect(host), "yum")
    pkgs = list(resolve(parse_records(REPOQUERY_OUT), [], stack="legacy").packages.values())
    with pytest.raises(StepFailed) as err:
        b.install(pkgs, [b.plugin_spec])
    assert err.value.message == ("yum refused the selection: nvidia-docker2-2.0.3-1.docker18.06.1.ce.amzn1.noarch "
                                 "requires docker = 18.06.1ce (installed: docker-17.12.1ce-1.135.amzn1.x86_64)")


def test_versionlock_plugin_joins_the_install_transaction(tmp_path: Path) -> None:
    b = backend(amzn2_root(tmp_path))
    assert not b.plugin_installed() and b.plugin_spec == "yum-plugin-versionlock"
    pkgs = list(resolve(parse_records(REPOQUERY_OUT), [], stack="legacy").packages.values())
    argv = b.install_argv(pkgs, [b.plugin_spec])
    assert argv[argv.index("install") + 1:] == [p.nevra for p in pkgs] + ["yum-plugin-versionlock"]
    (tmp_path / "etc/yum/pluginconf.d").mkdir(parents=True)
    (tmp_path / "etc/yum/pluginconf.d/versionlock.conf").write_text("[main]\nenabled = 1\n")
    assert b.plugin_installed()


def test_preflight_asks_for_no_package_manager_when_no_package_step_is_selected(tmp_path):
    """`install --only docker-runtime` on an Amazon Linux 2023 tree from a machine with no dnf or yum (the real-GPU
    script's Ubuntu, Packer on Ubuntu): nothing selected runs the package manager, so its absence stops nothing;
    with the packages step selected it does, naming what is missing."""
    from gpuprep.errors import PreconditionUnmet
    from gpuprep.options import InstallOptions
    from gpuprep.platform import detect
    from gpuprep.preflight import PreflightStep
    from gpuprep.runner.steps import Context

    root = tmp_path / "root"
    shutil.copytree(FIXTURES / "distros" / "amzn-2023", root)
    host = Host(root, env={"PATH": str(tmp_path / "no-such-bin")})  # no dnf, no yum on this "machine"
    only = ["docker-runtime"]
    ctx = Context(host, detect(host), InstallOptions(dry_run=True, only=only))
    ctx.only = only
    summary = PreflightStep().plan(ctx).summary
    assert "no package step selected: the package manager is not needed" in summary
    with pytest.raises(PreconditionUnmet, match="dnf"):
        PreflightStep().plan(Context(host, detect(host), InstallOptions(dry_run=True, only=["packages"])))
