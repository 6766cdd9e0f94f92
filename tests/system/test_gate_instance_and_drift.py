"""The boot gate on a host launched from the sealed image: short of the GPUs its instance type has, or with the
driver's userland replaced under the loaded module, ECS stays down; put right, ECS starts.

Real: systemd as PID 1 (systemd-nspawn), the gate unit gpuprep's install wrote with its RequiredBy=ecs.service,
`gpuprep doctor --boot` installed in the instance by the README's user-data, dnf/rpm, docker.service.
SIMULATED: the GPU and driver (see
simfixtures.py: 2 H100s, driver 580.178.04), and the EC2 instance metadata service, which these machines lack:
tests/imds_standin.py runs inside the instance as a unit of its own on 127.0.0.1, and the gate unit is pointed at
it through AWS_EC2_METADATA_SERVICE_ENDPOINT in a drop-in (the SDKs' variable gpuprep honours).

The two tests share one instance and run in order: the second carries on from the image the first built.
"""

from __future__ import annotations

import json
import socket
from pathlib import Path

from contract import json_output
from sim import checks_by_id, explain
from simfixtures import *  # noqa: F403  (pytest fixtures)
from testbed import DRIVER_VERSION

from gpuprep.bootcheck import UNIT_NAME

STANDIN = Path(__file__).resolve().parent.parent / "imds_standin.py"
IMDS_UNIT = "gpuprep-sim-imds.service"
NEW_DRIVER = "580.200.01"  # what a boot-time update would bring


def _free_port() -> int:
    # nspawn shares this machine's network namespace: take a port nobody here uses.
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serve_instance_type(inst, instance_type: str, port: int) -> str:
    """Install (or re-point) the metadata stand-in inside the instance and point the gate at it."""
    inst.write("/usr/local/libexec/gpuprep-sim-imds", STANDIN.read_text(), mode=0o755)
    inst.write(f"/etc/systemd/system/{IMDS_UNIT}", f"""[Unit]
Description=STAND-IN EC2 instance metadata service (gpuprep tests: no EC2 here)
Before={UNIT_NAME}

[Service]
Type=forking
ExecStart=/usr/bin/python3 /usr/local/libexec/gpuprep-sim-imds {port} {instance_type}

[Install]
WantedBy=multi-user.target
""")
    wants = inst.path(f"/etc/systemd/system/multi-user.target.wants/{IMDS_UNIT}")
    if not wants.is_symlink():
        wants.parent.mkdir(parents=True, exist_ok=True)
        wants.symlink_to(f"/etc/systemd/system/{IMDS_UNIT}")
    endpoint = f"http://127.0.0.1:{port}"
    inst.write(f"/etc/systemd/system/{UNIT_NAME}.d/imds.conf",
               f"[Unit]\nWants={IMDS_UNIT}\nAfter={IMDS_UNIT}\n\n[Service]\n"
               f"Environment=AWS_EC2_METADATA_SERVICE_ENDPOINT={endpoint}\n")
    return endpoint


def doctor(inst, endpoint: str) -> tuple[int, dict]:
    proc = inst.run(["gpuprep", "--json", "doctor", "--no-container"], check=False, timeout=300,
                    env={"AWS_EC2_METADATA_SERVICE_ENDPOINT": endpoint})
    return proc.returncode, json_output(proc.stdout)


def assert_held_back(inst, words: str) -> None:
    check = inst.unit_state(UNIT_NAME)
    assert (check["ActiveState"], check["ExecMainStatus"]) == ("failed", "1"), (check, inst.journal(UNIT_NAME))
    assert words in inst.journal(UNIT_NAME, lines=200), inst.journal(UNIT_NAME, lines=200)
    ecs = inst.unit_state("ecs.service")
    assert ecs["ActiveState"] == "inactive" and ecs["MainPID"] == "0", ecs


def assert_let_through(inst) -> None:
    assert inst.unit_state(UNIT_NAME)["ActiveState"] == "active", inst.journal(UNIT_NAME, lines=200)
    assert inst.unit_state("ecs.service")["ActiveState"] == "active", inst.journal("ecs.service")
    inst.wait_agent_registered()


def test_short_of_the_gpus_its_type_has_keeps_ecs_down(module_instance):
    inst = module_instance
    inst.build_image()
    port = _free_port()
    endpoint = serve_instance_type(inst, "p5.48xlarge", port)  # 8 GPUs; the simulated host has 2

    inst.launch_from_image()
    assert_held_back(inst, "p5.48xlarge has 8 H100 GPUs; this host sees PCI 2, /dev 2, NVML 2")
    assert inst.agent_db() is None, "the agent must not have started"
    rc, report = doctor(inst, endpoint)
    found = checks_by_id(report)
    assert rc == 2 and found["gpu-instance-count"]["status"] == "critical", explain(report)
    assert found["gpu-count"]["status"] == "ok", explain(report)  # the views agree: only the type tells
    assert "stop-instances" in found["gpu-instance-count"]["hint"]
    assert found["gpu-instance-count"]["data"]["imds"]["via"] == "IMDSv2"

    # The same image on a type with 2 GPUs (no hint can add a GPU here; stop/start moves to other hardware).
    serve_instance_type(inst, "g5g.16xlarge", port)
    inst.run(["systemctl", "daemon-reload"])
    inst.run(["systemctl", "restart", IMDS_UNIT])
    inst.run(["systemctl", "start", "ecs.service"], timeout=120)
    assert_let_through(inst)
    rc, report = doctor(inst, endpoint)
    assert checks_by_id(report)["gpu-instance-count"]["status"] == "ok", explain(report)


def test_driver_userland_replaced_under_the_module_keeps_ecs_down(module_instance):
    """Carries on from the first test's instance (its image, its stand-in saying g5g.16xlarge)."""
    inst = module_instance
    lib = inst.path("/usr/lib64/libnvidia-ml.so.1")
    # A boot-time update of the driver's userland (aws/amazon-ecs-ami 256): the new library, the link moved to it.
    new = lib.parent / f"libnvidia-ml.so.{NEW_DRIVER}"
    new.write_text("SIMULATED libnvidia-ml placeholder: an update's userland\n")
    lib.unlink()
    lib.symlink_to(new.name)

    inst.poweroff()
    inst.boot()
    assert_held_back(inst, f"NVRM API mismatch: driver userland {NEW_DRIVER} under the loaded kernel module "
                     f"{DRIVER_VERSION} (userland {DRIVER_VERSION} -> {NEW_DRIVER}")
    sealed = json.loads(inst.path("/etc/gpuprep/seal.json").read_text())
    assert sealed["driver"]["userland"] == sealed["driver"]["kernel_module"] == DRIVER_VERSION

    # The hint: put the sealed driver back (or reboot into the module the new userland came with); then ECS.
    lib.unlink()
    lib.symlink_to(f"libnvidia-ml.so.{DRIVER_VERSION}")
    inst.run(["systemctl", "start", "ecs.service"], timeout=120)
    assert_let_through(inst)
