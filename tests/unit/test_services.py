"""Service control argv per init system. systemctl --root is real; upstart/SysV cannot run here, so
for Amazon Linux 1 only the commands are checked (what a dry run lists and what would run)."""

from __future__ import annotations

import shutil

import pytest

from gpuprep.host import Host
from gpuprep.platform import detect
from gpuprep.services import Services, ServiceUnavailable

pytestmark = pytest.mark.allow_subp('systemctl')


def _tree(tmp_path, distro, fixtures):
    shutil.copytree(fixtures / "distros" / distro, tmp_path, dirs_exist_ok=True)
    host = Host(tmp_path)
    return host, Services(host, detect(host))


def test_systemd_verbs_inside_root_use_systemctl_root(tmp_path, fixtures):
    host, svc = _tree(tmp_path, "amzn-2023", fixtures)
    assert svc.argv("enable", "docker") == ["systemctl", f"--root={tmp_path}", "enable", "docker.service"]
    with pytest.raises(ServiceUnavailable):
        svc.start("docker")  # a running system is needed to start anything


def test_systemctl_root_enable_is_real_and_offline(tmp_path, fixtures):
    if shutil.which("systemctl") is None:
        pytest.skip("needs systemctl")
    host, svc = _tree(tmp_path, "amzn-2023", fixtures)
    unit = tmp_path / "usr/lib/systemd/system/ecs.service"
    unit.parent.mkdir(parents=True)
    unit.write_text("[Unit]\nDescription=ECS\n[Service]\nExecStart=/bin/true\n[Install]\nWantedBy=multi-user.target\n")
    assert svc.state("ecs").enabled == "disabled"
    svc.enable("ecs")
    assert (tmp_path / "etc/systemd/system/multi-user.target.wants/ecs.service").is_symlink()
    assert svc.state("ecs").is_enabled


def test_amazon_linux_1_upstart_and_sysv_argv(tmp_path, fixtures):
    host, svc = _tree(tmp_path, "amzn-2018.03", fixtures)
    (tmp_path / "etc/init").mkdir()
    (tmp_path / "etc/init/ecs.conf").write_text("start on started docker\n")
    assert svc.upstart
    assert svc.argv("stop", "ecs") == ["stop", "ecs"]
    assert svc.argv("start", "ecs") == ["start", "ecs"]
    assert svc.argv("enable", "ecs") == ["true"]  # an upstart job is enabled by its start-on stanza
    # docker is a SysV script there; inside --root chkconfig acts on the image, through chroot.
    assert svc.argv("enable", "docker") == ["chroot", str(tmp_path), "chkconfig", "docker", "on"]
    assert svc.argv("restart", "docker") == ["service", "docker", "restart"]


def test_a_service_verb_inside_root_is_a_precondition_a_user_can_read(tmp_path, fixtures):
    """Raised inside a step, ServiceUnavailable is a one-line precondition (exit 3), never "internal error"."""
    from gpuprep.options import InstallOptions
    from gpuprep.report import StepStatus
    from gpuprep.runner.steps import Context, Converged, Step, run_steps

    host, svc = _tree(tmp_path, "amzn-2023", fixtures)

    class Restarts(Step):
        id = "restarts"

        def plan(self, ctx):
            svc.restart("docker")
            return Converged("restarted")

    report = run_steps(Context(host, detect(host), InstallOptions()), "install", [Restarts()])
    step = report.steps[0]
    assert step.status is StepStatus.FAILED and report.exit_code == 3
    assert step.summary == "`restart docker` needs the running system, not --root"
    assert "internal error" not in (report.error or "") and "without --root" in step.hint
