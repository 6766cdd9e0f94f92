"""Pure parts of gpuprep/engine: dockerd's flags, nvidia-smi's CSV in a container, Engine errors; and the
argv docker-service, docker-reload and ecs-config run on Amazon Linux 1 (SysV docker, upstart ecs).

The error texts are what Engine 20.10 returned here (docs/testbed.md 1-2) and what newer Engines say.
"""

from __future__ import annotations

import shlex
import shutil
from pathlib import Path

import pytest
from conftest import FIXTURES

from gpuprep.ecs.steps import EcsConfigStep
from gpuprep.engine import gpu_container as gc
from gpuprep.engine.dockerd import DockerdDidNotStart, EngineProcess, _serves, flag_values, restart, sysv_managed
from gpuprep.engine.steps import DockerServiceStep, _commands
from gpuprep.host import Host
from gpuprep.options import InstallOptions
from gpuprep.platform import detect
from gpuprep.report import StepStatus
from gpuprep.runner.steps import Context, run_steps

pytestmark = pytest.mark.allow_subp('service', 'chkconfig', 'chroot')


def test_flag_values_reads_every_pflag_form():
    argv = ["/usr/bin/dockerd", "-H", "fd://", "--host=unix:///run/a.sock", "-Htcp://0.0.0.0:2375",
            "--add-runtime", "nvidia=/usr/libexec/docker/nvidia", "--add-runtime=crun=/usr/bin/crun",
            "--pidfile", "/run/x.pid"]
    assert flag_values(argv, ("-H", "--host")) == ["fd://", "unix:///run/a.sock", "tcp://0.0.0.0:2375"]
    proc = EngineProcess(1, argv, argv[0], "/", {}, 0.0)
    assert proc.add_runtimes == {"nvidia": "/usr/libexec/docker/nvidia", "crun": "/usr/bin/crun"}
    assert proc.pidfile == "/run/x.pid" and str(proc.log_path) == "/run/dockerd.log"


def test_serves_matches_the_socket_and_the_default():
    assert _serves(["dockerd", "-H", "unix:///tmp/x/docker.sock"], "unix:///tmp/x/docker.sock")
    assert not _serves(["dockerd", "-H", "unix:///tmp/y/docker.sock"], "unix:///tmp/x/docker.sock")
    assert _serves(["dockerd"], "unix:///var/run/docker.sock")


def test_parse_query_rows():
    text = ("0, GPU-0e7d3af2-be49-affe-ae6c-f6fcf358f2ea, NVIDIA H200, 580.159.04\n"
            "1, GPU-5a1b2c3d-4e5f-6071-8293-a4b5c6d7e8f9, NVIDIA H200, 580.159.04\n")
    gpus = gc.parse_query(text)
    assert [g.index for g in gpus] == [0, 1] and gpus[0].name == "NVIDIA H200"
    assert gpus[1].driver_version == "580.159.04"
    assert gc.parse_query("NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver.") == []


def test_classify_start_errors():
    assert gc.classify_start_error('exec: "nvidia-smi": executable file not found in $PATH: unknown') == gc.NOT_DEFAULT
    assert gc.classify_start_error("Unknown runtime specified nvidia") == gc.RUNTIME_MISSING
    assert gc.classify_start_error("unknown or invalid runtime name: nvidia") == gc.RUNTIME_MISSING
    assert gc.classify_start_error(
        "OCI runtime create failed: fork/exec /usr/bin/nvidia-container-runtime: no such file or directory"
    ) == gc.RUNTIME_BINARY
    assert gc.classify_start_error('could not select device driver "" with capabilities: [[gpu]]') == gc.RUNTIME_MISSING


# What NVIDIA's runtime answered here, through dockerd 20.10, when it ran and could not give the container the GPUs
# (tests/integration/test_nvidia_runtime_testbed.py provokes each; the text after "OCI runtime create failed: ").
REAL_RUNTIME_FAILURES = {
    # 1.20.0, mode auto -> jit-cdi, no driver
    'could not apply required modification to OCI specification: error modifying OCI spec: failed to create the '
    'automatic CDI modifier: failed to generate CDI spec for mode "auto": failed to construct device spec generators: '
    "failed to initialize NVML: ERROR_LIBRARY_NOT_FOUND: unknown": gc.DRIVER,
    # 1.18.0, mode auto -> jit-cdi, no driver: only its own device "unresolvable" (toolkit issue 1537)
    "could not apply required modification to OCI specification: error modifying OCI spec: failed to inject CDI "
    "devices: unresolvable CDI devices runtime.nvidia.com/gpu=all: unknown": gc.DRIVER,
    # 1.17.8, mode auto -> legacy, libnvidia-container-tools not installed
    "runc create failed: unable to start container process: error during container init: error running hook #1: "
    "error running hook: exit status 1, stdout: , stderr: Auto-detected mode as 'legacy'\ncouldn't find binary "
    "nvidia-container-cli in /usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin : exec: "
    '"nvidia-container-cli": executable file not found in $PATH: unknown': gc.RUNTIME_INJECT,
    # 1.20.0, mode cdi, no spec file
    "could not apply required modification to OCI specification: error modifying OCI spec: failed to inject CDI "
    "devices: unresolvable CDI devices nvidia.com/gpu=all: unknown": gc.RUNTIME_INJECT,
}


@pytest.mark.parametrize("message, link", REAL_RUNTIME_FAILURES.items())
def test_the_real_runtimes_failures_are_named_by_their_cause_not_as_its_binary(message, link):
    full = f"failed to create shim task: OCI runtime create failed: {message}"
    assert gc.classify_start_error(full) == link
    named, summary, hint = gc._explain(link, full, {"DefaultRuntime": "nvidia"}, "img")
    assert named == link and not summary.startswith("the nvidia runtime's binary") and hint


def test_explain_refines_nvidia_smi_missing_with_docker_info():
    msg = 'exec: "nvidia-smi": executable file not found in $PATH'
    runc_only = {"Runtimes": {"runc": {"path": "runc"}}, "DefaultRuntime": "runc"}
    not_default = {"Runtimes": {"runc": {}, "nvidia": {"path": "/x"}}, "DefaultRuntime": "runc"}
    default = {"Runtimes": {"runc": {}, "nvidia": {"path": "/x"}}, "DefaultRuntime": "nvidia"}
    assert gc._explain(gc.NOT_DEFAULT, msg, runc_only, "img")[0] == gc.RUNTIME_MISSING
    assert gc._explain(gc.NOT_DEFAULT, msg, not_default, "img")[0] == gc.NOT_DEFAULT
    assert gc._explain(gc.NOT_DEFAULT, msg, default, "img")[0] == gc.NO_SMI


# -- Amazon Linux 1: SysV docker, upstart ecs ---------------------------------------------------
# SIMULATED: yum 3, upstart and SysV init cannot run on this Debian machine, so `service`,
# `chkconfig` and `chroot` are stand-in scripts on the Host's PATH that log their arguments and keep
# the service's state in files; the tests assert the argv gpuprep runs with the AL1 profile.
STAND_IN = """#!/bin/sh
D=@BIN@; PATH=/usr/bin:/bin
echo "$(basename "$0") $*" >> "$D/argv.log"
case "$(basename "$0") $*" in
  "service docker status") [ -e "$D/running" ] && { echo "docker (pid 4242) is running..."; exit 0; }
                           echo "docker is stopped"; exit 3 ;;
  "service docker start") touch "$D/running" ;;
  "service docker restart") [ -e "$D/fail-restart" ] && { echo "Starting docker: [FAILED]"; exit 1; }
                            touch "$D/running" ;;
  "chkconfig docker") [ -e "$D/on" ] || exit 1 ;;
  "chkconfig docker on") touch "$D/on" ;;
  chroot*" chkconfig docker on") for n in 3 4 5; do mkdir -p "$1/etc/rc.d/rc$n.d"
                                   ln -sf ../init.d/docker "$1/etc/rc.d/rc$n.d/S95docker"; done ;;
esac
"""


@pytest.fixture
def stand_ins(tmp_path: Path) -> Path:
    d = tmp_path / "bin"
    d.mkdir()
    for name in ("service", "chkconfig", "chroot"):
        (d / name).write_text(STAND_IN.replace("@BIN@", shlex.quote(str(d))))
        (d / name).chmod(0o755)
    return d


def argv_log(bin_dir: Path) -> list[str]:
    log = bin_dir / "argv.log"
    return log.read_text().splitlines() if log.exists() else []


def al1_platform():
    return detect(Host(FIXTURES / "distros/amzn-2018.03"))


class Al1Host(Host):
    """The running Amazon Linux 1 system as service control sees it: /etc/init.d/docker (SysV), no
    /etc/init/docker.conf, no systemctl; programs found on ``bin_dir`` only. No Engine socket to poll
    (``docker_url`` None): the stand-in `service docker start` starts no dockerd."""

    docker_url = None

    def __init__(self, bin_dir: Path) -> None:
        super().__init__("/", env={"PATH": str(bin_dir)})

    def exists(self, p) -> bool:
        return str(p) in ("/etc/init.d/docker", "/etc/rc.d/init.d/docker")


def test_al1_docker_service_is_chkconfig_on_and_service_start(stand_ins):
    platform = al1_platform()
    assert platform.init == "upstart" and platform.major == "2018.03"
    host = Al1Host(stand_ins)

    def run(dry_run: bool):
        ctx = Context(host, platform, InstallOptions(dry_run=dry_run))
        return run_steps(ctx, "install", [DockerServiceStep()]).steps[0]

    planned = run(True)
    assert planned.status is StepStatus.PLANNED, planned.summary
    assert planned.commands == [["chkconfig", "docker", "on"], ["service", "docker", "start"]]
    assert argv_log(stand_ins) == ["service docker status", "chkconfig docker"]  # asked, nothing changed

    (stand_ins / "argv.log").unlink()
    done = run(False)
    assert done.status is StepStatus.CHANGED, done.summary
    assert argv_log(stand_ins) == ["service docker status", "chkconfig docker", "chkconfig docker on",
                                   "service docker start"]

    (stand_ins / "argv.log").unlink()
    again = run(False)
    assert again.status is StepStatus.OK, again.summary
    assert argv_log(stand_ins) == ["service docker status", "chkconfig docker"]


def test_al1_restart_is_service_docker_restart_and_a_failure_says_so(stand_ins):
    host = Al1Host(stand_ins)
    proc = EngineProcess(4242, ["/usr/bin/dockerd", "--default-ulimit", "nofile=1024:4096"], "/usr/bin/dockerd",
                         "/", {}, 0.0, systemd_unit=None)
    assert sysv_managed(host, proc)
    assert restart(host, proc).how == ["service", "docker", "restart"]
    assert argv_log(stand_ins) == ["service docker restart"]
    assert _commands(host, "restart", proc, False) == [["service", "docker", "restart"]]  # what --dry-run lists
    assert _commands(host, "reload", proc, False) == [["kill", "-HUP", "4242"]]  # SIGHUP, as its reload does

    (stand_ins / "fail-restart").touch()
    with pytest.raises(DockerdDidNotStart, match=r"`service docker restart` failed: Starting docker: \[FAILED\]"):
        restart(host, proc)


def test_al1_image_enables_docker_through_chkconfig_inside_the_root(stand_ins, tmp_path):
    root = tmp_path / "root"
    shutil.copytree(FIXTURES / "distros/amzn-2018.03", root)
    (root / "etc/rc.d/init.d").mkdir(parents=True)
    (root / "etc/rc.d/init.d/docker").write_text("#!/bin/sh\n# chkconfig: - 95 05\n")
    host = Host(root, env={"PATH": str(stand_ins)})

    def run(dry_run: bool = False):
        ctx = Context(host, detect(host), InstallOptions(dry_run=dry_run))
        return run_steps(ctx, "install", [DockerServiceStep()]).steps[0]

    chroot = ["chroot", str(root.resolve()), "chkconfig", "docker", "on"]
    assert run(True).commands == [chroot] and argv_log(stand_ins) == []
    assert run().status is StepStatus.CHANGED
    assert argv_log(stand_ins) == [" ".join(chroot)]  # never the build machine's chkconfig
    assert (root / "etc/rc.d/rc3.d/S95docker").is_symlink()
    assert run().status is StepStatus.OK and len(argv_log(stand_ins)) == 1

    (root / "etc/rc.d/init.d/docker").unlink()
    failed = run()
    assert failed.status is StepStatus.FAILED and "docker is not installed" in failed.summary


def test_al1_image_ecs_is_an_upstart_job_enabled_by_its_file(stand_ins, tmp_path):
    root = tmp_path / "root"
    shutil.copytree(FIXTURES / "distros/amzn-2018.03", root)
    host = Host(root, env={"PATH": str(stand_ins)})

    def run():
        ctx = Context(host, detect(host), InstallOptions())
        return run_steps(ctx, "install", [EcsConfigStep()]).steps[0]

    failed = run()  # no /etc/init/ecs.conf: ecs-init is not installed
    assert failed.status is StepStatus.FAILED and "ecs is not installed" in failed.summary
    (root / "etc/init").mkdir()
    (root / "etc/init/ecs.conf").write_text("start on stopped rc RUNLEVEL=[345]\n"
                                            "exec /usr/libexec/amazon-ecs-init start\n")
    done = run()
    assert done.status is StepStatus.CHANGED and done.commands == [], done.summary
    assert (root / "etc/ecs/ecs.config").read_text() == "ECS_ENABLE_GPU_SUPPORT=true\n"
    assert run().status is StepStatus.OK
    assert argv_log(stand_ins) == []  # nothing to run: no chkconfig, no start


# -- the routes gpu-check and gpu-container prove -------------------------------------------------
def test_classify_cdi_errors_as_engine_26_words_them():
    assert gc.classify_cdi_error('could not select device driver "cdi" with capabilities: []') == gc.CDI_OFF
    assert gc.classify_cdi_error("CDI device injection failed: unresolvable CDI devices nvidia.com/gpu=all") \
        == gc.CDI_UNRESOLVABLE
    assert gc.classify_cdi_error('CDI device injection failed: failed to inject devices: failed to stat CDI host '
                                 'device "/dev/nvidia9": no such file or directory') == gc.CDI_INJECTION
    assert gc.classify_cdi_error('exec: "nvidia-smi": executable file not found in $PATH') == gc.CDI_NO_SMI
    assert gc.classify_cdi_error("no space left on device") == gc.ENGINE


@pytest.mark.parametrize("info, config, expected, hint", [
    ({"ServerVersion": "20.10.24"}, {}, ["default-runtime"], False),
    ({"ServerVersion": "20.10.24"}, {"features": {"cdi": True}}, ["default-runtime"], False),  # no CDI before 25
    ({"ServerVersion": "26.1.5+dfsg1", "CDISpecDirs": []}, {}, ["default-runtime"], False),
    ({"ServerVersion": "26.1.5+dfsg1", "CDISpecDirs": ["/etc/cdi", "/var/run/cdi"]}, {"features": {"cdi": True}},
     ["default-runtime", "cdi"], False),
    ({"ServerVersion": "28.2.1", "CDISpecDirs": ["/etc/cdi", "/var/run/cdi"]}, {}, ["default-runtime", "cdi"], False),
    # set in daemon.json, not taken up by the running Engine: proven, and its failure says restart
    ({"ServerVersion": "26.1.5+dfsg1", "CDISpecDirs": []}, {"features": {"cdi": True}}, ["default-runtime", "cdi"],
     True),
    (None, {"features": {"cdi": True}}, ["default-runtime", "cdi"], False),  # no Engine answered: the file says on
])
def test_configured_routes(info, config, expected, hint):
    from gpuprep.engine.gpu_routes import configured_routes

    routes = configured_routes(info, config)
    assert routes.routes == expected and routes.why
    assert bool(routes.cdi_hint) is hint
    if hint:
        assert "gpuprep install --only docker-reload" in routes.cdi_hint


def _result(route: str, ok: bool, link: str = "ok", summary: str = "", seconds: float = 0.3) -> gc.ProbeResult:
    gpus = [gc.ContainerGpu(0, "GPU-a", "H200", "580.1")] if ok else []
    return gc.ProbeResult(ok, link, summary or f"1 GPU(s) visible in img {gc.route_took(route, seconds)}",
                          "fix it" if not ok else "", "img", route, seconds, gpus=gpus)


def test_proof_says_each_route_and_names_the_failing_one():
    from gpuprep.engine.gpu_routes import Proof

    both = Proof([_result("default-runtime", True), _result("cdi", True, seconds=0.24)])
    assert both.ok and both.summary() == ("1 GPU(s) visible in img without --runtime (0.30s) and 1 through CDI "
                                          "(nvidia.com/gpu=all, runtime runc; 0.24s)")
    assert [r["route"] for r in both.as_data()["routes"]] == ["default-runtime", "cdi"]
    cdi_bad = Proof([_result("default-runtime", True),
                     _result("cdi", False, gc.CDI_UNRESOLVABLE, "through CDI (nvidia.com/gpu=all, runtime runc): x")])
    assert cdi_bad.summary() == ("cdi-unresolvable: through CDI (nvidia.com/gpu=all, runtime runc): x "
                                 "(route default-runtime passed)")
    data = cdi_bad.as_data()
    assert data["link"] == "cdi-unresolvable" and data["routes"][1]["hint"] == "fix it"
    default_bad = Proof([_result("default-runtime", False, gc.NOT_DEFAULT, "nvidia is not Docker's default"),
                         _result("cdi", True)])
    assert default_bad.summary() == ("runtime-not-default: without --runtime: nvidia is not Docker's default "
                                     "(route cdi passed)")
    alone = Proof([_result("default-runtime", False, gc.NOT_DEFAULT, "nvidia is not Docker's default")])
    assert alone.summary() == "runtime-not-default: nvidia is not Docker's default"  # as before routes
    assert gc.run_argv("img", "cdi")[:9] == ["docker", "run", "--rm", "--network", "none", "--runtime", "runc",
                                             "--device", "nvidia.com/gpu=all"]


@pytest.mark.parametrize("dry_run", [True, False])
def test_docker_service_names_a_daemon_json_dockerd_cannot_read_before_starting_it(tmp_path, dry_run):
    """A trailing comma stops dockerd, which says so only in its journal: docker-service reads the file first and
    fails naming it (file, line, column), exit 2, with nothing started (issue 16)."""
    root = tmp_path / "root"
    shutil.copytree(FIXTURES / "distros/amzn-2023", root)
    daemon_json = root / "etc/docker/daemon.json"
    daemon_json.parent.mkdir(parents=True)
    daemon_json.write_text('{\n  "bridge": "none",\n  "iptables": false,\n}\n')
    host = Host(root, env={"PATH": str(tmp_path / "no-bin")})
    ctx = Context(host, detect(host), InstallOptions(dry_run=dry_run))
    report = run_steps(ctx, "install", [DockerServiceStep()])
    step = report.steps[0]
    assert step.status is StepStatus.FAILED and report.exit_code == 2
    assert step.summary.startswith(f"{daemon_json.resolve()}: invalid JSON: a trailing comma at line 3 column 20")
    assert step.summary.endswith("dockerd would not start with it") and "by hand" in step.hint
