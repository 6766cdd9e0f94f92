"""Pure parsers of gpuprep/engine: dockerd's flags, nvidia-smi's CSV in a container, Engine errors.

The error texts are what Engine 20.10 returned here (TESTBED.md 1-2) and what newer Engines say.
"""

from __future__ import annotations

from gpuprep.engine import gpu_container as gc
from gpuprep.engine.dockerd import EngineProcess, _serves, flag_values


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


def test_explain_refines_nvidia_smi_missing_with_docker_info():
    msg = 'exec: "nvidia-smi": executable file not found in $PATH'
    runc_only = {"Runtimes": {"runc": {"path": "runc"}}, "DefaultRuntime": "runc"}
    not_default = {"Runtimes": {"runc": {}, "nvidia": {"path": "/x"}}, "DefaultRuntime": "runc"}
    default = {"Runtimes": {"runc": {}, "nvidia": {"path": "/x"}}, "DefaultRuntime": "nvidia"}
    assert gc._explain(gc.NOT_DEFAULT, msg, runc_only, "img")[0] == gc.RUNTIME_MISSING
    assert gc._explain(gc.NOT_DEFAULT, msg, not_default, "img")[0] == gc.NOT_DEFAULT
    assert gc._explain(gc.NOT_DEFAULT, msg, default, "img")[0] == gc.NO_SMI
