"""gpuprep through Ansible: the role and module of integrations/ansible, driven by real ansible-core over ssh
against three booted simulated instances at once, one of them broken.

The instances (fleet.py) each run sshd in a network namespace of their own; Ansible reaches them with plain
ssh at their veth addresses, as it reaches EC2 instances by their private IPs (no connection plugin: core has
none for nspawn, and ssh is what users run). The broken one, gpu-c, has a GPU whose driver did not load: its
nvidia-smi exits 9 ("NVIDIA driver is not loaded", NVML's code), so install's gpu-check fails there.

The tests carry on from each other, in order, on the same three instances (module scope): install (the play
reports gpu-c and only it), the same play again (changed=0), install.sh again only where the wheelhouse is not
the one installed, the fleet doctor table after a reboot, and --check --diff on a drifted host (gpuprep's dry
run, its diff, nothing changed).

Real: ansible-core (PyPI, the test extra) and OpenSSH, systemd, dockerd, dnf/rpm, the wheelhouse `make dist`
builds from this checkout (simfixtures' ``wheelhouse``) installed by its install.sh on the instances' python3
(3.9, as AL2023's; Ansible's modules run on it too). SIMULATED: what fleet.py and simfixtures.py list (GPU,
driver, NVIDIA's and Amazon's repositories, the ECS agent, EC2).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import fixture_repo as fr
import pytest
from fleetfixtures import *  # noqa: F403  (pytest fixtures)
from sim import IMAGE
from simfixtures import *  # noqa: F403  (pytest fixtures)

REPO = Path(__file__).resolve().parents[2]
ANSIBLE = REPO / "integrations" / "ansible"
ANSIBLE_PLAYBOOK = Path(sys.executable).parent / "ansible-playbook"
NAMES = ("gpu-a", "gpu-b", "gpu-c")
BROKEN = "gpu-c"
INSTALL_ARGS = ["--repo-file", fr.NVIDIA_REPO_FILE, "--image", IMAGE]  # no internet here
RECAP = re.compile(r"^(\S+)\s+: ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)\s+skipped=(\d+)"
                   r"\s+rescued=(\d+)\s+ignored=(\d+)", re.M)


@dataclass
class Play:
    rc: int
    output: str
    recap: dict[str, dict[str, int]]
    log: Path

    def __str__(self) -> str:
        return f"ansible-playbook exited {self.rc} (whole output in {self.log})\n{self.output[-6000:]}"

    __repr__ = __str__  # what an assertion message shows


@pytest.fixture(scope="module")
def fleet(base_tree, repos, fleet_key, wheelhouse, wheelhouse_dir, tmp_path_factory):
    if not ANSIBLE_PLAYBOOK.exists():
        pytest.skip(f"needs ansible-core in this venv ({ANSIBLE_PLAYBOOK}; `make venv` installs the test extra)")
    import fleet as fleet_mod

    key, public = fleet_key

    def break_one(host) -> None:
        if host.name.endswith("-13"):  # the third: gpu-c
            host.path(fr.HOST_SMI).write_bytes(fr.fake_smi_bytes(host.gpus, exit_code=9))

    with fleet_mod.booted(base_tree, repos, 3, wheelhouse=wheelhouse, public_key=public, before_boot=break_one,
                          first=11) as hosts:
        for host in hosts:
            host.wait_ssh()
        work = tmp_path_factory.mktemp("ansible")
        inventory = work / "inventory.ini"
        inventory.write_text(
            "[gpu]\n" + "".join(f"{n} ansible_host={h.address}\n" for n, h in zip(NAMES, hosts))
            + "\n[gpu:vars]\nansible_user=root\n"
            f"ansible_ssh_private_key_file={key}\n"
            "ansible_ssh_common_args='-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null'\n"
            "ansible_python_interpreter=/usr/local/bin/python3\n")  # 3.9: python3 on PATH, as on AL2023
        yield {"hosts": dict(zip(NAMES, hosts)), "inventory": inventory, "work": work,
               "wheelhouse": wheelhouse_dir}


def playbook(fleet: dict, name: str, *options: str, **extra_vars) -> Play:
    """ansible-playbook NAME against the fleet's inventory; its recap per host."""
    work: Path = fleet["work"]
    control = tempfile.mkdtemp(prefix="gpf-cp-")  # ssh's ControlPath must stay under 108 characters
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(work), "LANG": "C.UTF-8",
        "ANSIBLE_ROLES_PATH": str(ANSIBLE / "roles"), "ANSIBLE_NOCOLOR": "1", "ANSIBLE_FORCE_COLOR": "0",
        "ANSIBLE_PIPELINING": "True", "ANSIBLE_HOST_KEY_CHECKING": "False", "ANSIBLE_RETRY_FILES_ENABLED": "False",
        "ANSIBLE_SSH_CONTROL_PATH_DIR": control, "ANSIBLE_LOCAL_TEMP": str(work / "ansible-tmp"),
        "ANSIBLE_DEPRECATION_WARNINGS": "False", "PYTHONWARNINGS": "ignore",
    }
    extra = {"gpuprep_become": False, "gpuprep_wheelhouse": str(fleet["wheelhouse"]), **extra_vars}
    argv = [str(ANSIBLE_PLAYBOOK), "-i", str(fleet["inventory"]), str(ANSIBLE / "playbooks" / name),
            "-e", json.dumps(extra), *options]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=900, env=env, cwd=work)
    subprocess.run(["rm", "-rf", control], check=False)
    output = proc.stdout + proc.stderr
    log = work / f"play-{len(list(work.glob('play-*.log'))) + 1}-{name}.log"
    log.write_text(output)  # whole, beside the truncated assertion message
    recap = {m.group(1): dict(zip(("ok", "changed", "unreachable", "failed", "skipped", "rescued", "ignored"),
                                  map(int, m.groups()[1:]))) for m in RECAP.finditer(output)}
    return Play(proc.returncode, output, recap, log)


def install(fleet: dict, *options: str) -> Play:
    return playbook(fleet, "gpuprep.yml", *options, gpuprep_command="install", gpuprep_args=INSTALL_ARGS)


def test_install_play_reports_the_broken_host_and_only_it(fleet):
    play = install(fleet)
    assert set(play.recap) == set(NAMES), play
    for name in ("gpu-a", "gpu-b"):
        assert play.recap[name]["failed"] == 0 and play.recap[name]["unreachable"] == 0, play
        # the wheelhouse copied, its install.sh, the record of it, gpuprep install
        assert play.recap[name]["changed"] >= 4, play
        assert f"fatal: [{name}]" not in play.output, play
        host = fleet["hosts"][name]
        assert host.run(["readlink", "/usr/sbin/gpuprep"]).stdout.strip() == "/opt/gpuprep/bin/gpuprep"
        assert host.run(["docker", "info", "--format", "{{.DefaultRuntime}}"]).stdout.strip() == "nvidia"
    assert play.recap[BROKEN]["failed"] == 1, play
    assert play.rc == 2, play  # ansible-playbook: some host failed
    fatal = [line for line in play.output.splitlines() if line.startswith(f"fatal: [{BROKEN}]")]
    assert len(fatal) == 1 and "gpu-check" in fatal[0], play
    result = json.loads(fatal[0].split("=> ", 1)[1])
    assert result["rc"] == 1 and result["status"] == "failed", result
    assert result["report"]["steps"][-1]["status"] == "skipped", result["report"]["steps"]  # stopped at gpu-check


def test_a_second_run_changes_nothing(fleet):
    play = install(fleet)
    assert all(r["changed"] == 0 for r in play.recap.values()), play
    assert [n for n, r in play.recap.items() if r["failed"]] == [BROKEN], play


def test_install_sh_runs_again_only_where_the_wheelhouse_is_not_installed(fleet):
    """The role runs the wheelhouse's install.sh where the lock recorded by the last install differs from the
    wheelhouse's (gpu-a: as after an upgrade of the wheelhouse) or the program is gone (gpu-b), and nowhere else."""
    a, b = fleet["hosts"]["gpu-a"], fleet["hosts"]["gpu-b"]
    record = a.path("/var/cache/gpuprep/installed-requirements.txt")
    record.write_text(record.read_text() + "# an older wheelhouse\n")
    b.run(["rm", "/usr/sbin/gpuprep"])
    play = install(fleet, "--limit", "gpu-a,gpu-b")
    ran = re.search(r"^TASK \[gpuprep : Run the wheelhouse's install.sh\].*?\n\n", play.output, re.M | re.S)
    assert ran and sorted(re.findall(r"^changed: \[(\S+)\]", ran.group(0), re.M)) == ["gpu-a", "gpu-b"], play
    assert play.recap["gpu-a"]["changed"] == 2 and play.recap["gpu-b"]["changed"] == 1, play  # + gpu-a's record
    assert all(r["failed"] == 0 for r in play.recap.values()), play
    assert record.read_bytes() == a.path("/var/cache/gpuprep/wheelhouse/requirements.txt").read_bytes()
    assert b.run(["readlink", "/usr/sbin/gpuprep"]).stdout.strip() == "/opt/gpuprep/bin/gpuprep"
    again = install(fleet, "--limit", "gpu-a,gpu-b")
    assert all(r["changed"] == 0 for r in again.recap.values()), again


def test_fleet_doctor_table(fleet):
    """After a reboot (the fleet in service: the boot gate ran, ECS started where it passed), one table."""
    for host in fleet["hosts"].values():
        host.reboot()
        host.wait_ssh()
    table, as_json = fleet["work"] / "fleet-doctor.txt", fleet["work"] / "fleet-doctor.json"
    play = playbook(fleet, "fleet-doctor.yml", gpuprep_args=["--image", IMAGE], gpuprep_fleet_table=str(table),
                    gpuprep_fleet_json=str(as_json))
    assert play.rc == 0 and all(r["failed"] == 0 for r in play.recap.values()), play
    text = table.read_text()
    print("\n" + text)  # the table, for the record (pytest -s)
    if os.environ.get("GPUPREP_FLEET_TABLE"):
        Path(os.environ["GPUPREP_FLEET_TABLE"]).write_text(text)
    rows = json.loads(as_json.read_text())
    assert rows["gpu-a"] == {"status": "ok", "failing": []}, text
    assert rows["gpu-b"] == {"status": "ok", "failing": []}, text
    assert rows[BROKEN]["status"] == "critical" and rows[BROKEN]["failing"], text
    lines = text.splitlines()
    assert lines[0].split() == ["host", "status", "failing", "checks"], text
    assert [line.split()[:2] for line in lines[1:]] == [["gpu-a", "ok"], ["gpu-b", "ok"], [BROKEN, "critical"]]
    assert lines[3].split()[2] == ",".join(rows[BROKEN]["failing"]), text


def test_check_mode_is_gpuprep_dry_run_with_its_diff(fleet):
    """--check runs install --dry-run: the drifted host reports changed with gpuprep's diff; nothing changes."""
    host = fleet["hosts"]["gpu-a"]
    daemon_json = host.path("/etc/docker/daemon.json")
    config = json.loads(daemon_json.read_text())
    assert config.pop("default-runtime") == "nvidia"
    daemon_json.write_text(json.dumps(config, indent=4) + "\n")  # someone's hand edit
    drifted = daemon_json.read_bytes()

    play = install(fleet, "--check", "--diff", "--limit", "gpu-a,gpu-b")
    assert play.recap["gpu-a"]["changed"] == 1 and play.recap["gpu-a"]["failed"] == 0, play
    assert play.recap["gpu-b"]["changed"] == 0 and play.recap["gpu-b"]["failed"] == 0, play
    assert "docker-runtime:" in play.output and "--- /etc/docker/daemon.json" in play.output, play
    assert re.search(r'^\+\s+"default-runtime": "nvidia"', play.output, re.M), play
    assert daemon_json.read_bytes() == drifted, "--check changed daemon.json"


def test_the_role_places_a_knowledge_table_validated_by_the_hosts_gpuprep(fleet):
    """gpuprep_knowledge_files: a newer table lands in /etc/gpuprep/knowledge.d, root's and 0644, and is the one in
    use; a broken one fails the task on the host (copy's validate runs `gpuprep knowledge validate`) and is not
    placed."""
    table = json.loads((REPO / "gpuprep/knowledge/data/toolkit-security.json").read_text())
    good, bad = fleet["work"] / "toolkit-security.json", fleet["work"] / "broken-xid.json"
    good.write_text(json.dumps({**table, "as_of": "2026-12-08"}))
    bad.write_text(json.dumps({**table, "table": "xid"}))  # a toolkit table claiming to be the XID catalog
    play = playbook(fleet, "gpuprep.yml", "--limit", "gpu-a", gpuprep_command="doctor",
                    gpuprep_args=["--no-container"], gpuprep_knowledge_files=[str(good)])
    assert play.recap["gpu-a"]["failed"] == 0, play
    host = fleet["hosts"]["gpu-a"]
    assert host.run(["stat", "-c", "%U %a", "/etc/gpuprep/knowledge.d/toolkit-security.json"]).stdout.split() == \
        ["root", "644"]
    listing = json.loads(host.run(["/usr/sbin/gpuprep", "--json", "knowledge"]).stdout)
    origin = {t["table"]: t["origin"] for t in listing["tables"]}
    assert origin["toolkit-security"] == "/etc/gpuprep/knowledge.d/toolkit-security.json", listing

    play = playbook(fleet, "gpuprep.yml", "--limit", "gpu-a", gpuprep_command="doctor",
                    gpuprep_args=["--no-container"], gpuprep_knowledge_files=[str(bad)])
    assert play.recap["gpu-a"]["failed"] == 1 and "failed to validate" in play.output, play
    assert host.run(["ls", "/etc/gpuprep/knowledge.d"]).stdout.split() == ["toolkit-security.json"]
    host.run(["rm", "-f", "/etc/gpuprep/knowledge.d/toolkit-security.json"])
