"""The image pipelines of integrations/, run in simulated instances: Packer's provisioners, the Image Builder
component's phases, the SSM Command document, and the doctor timer feeding the real node_exporter.

Two instances boot once for the module (fleet.py: the AL2023-like booted host plus sshd, venv and
node_exporter):
- the first is built the Packer way: the template's provisioners are read from
  integrations/packer/gpuprep-ecs-gpu.pkr.hcl and run in its order (the same script files, the same
  environment variables, as root as its execute_command does), install with ``--prom-dir``; it is then
  launched as a new instance from the image, where the boot gate, the doctor timer and node_exporter are
  checked, and the SSM document is run on it as a fleet would (doctor, install, seal, a bad command);
- the second is built the Image Builder way: the component's build and validate phases, a launch from the
  image, then its test phase.

Real: systemd, dockerd, dnf/rpm, the wheelhouse `make dist` builds from this checkout (simfixtures' ``wheelhouse``)
installed by its own install.sh (venv and pip offline, hash-checked, on the instances' python3 3.9),
node_exporter 1.5.0 and its
textfile collector, promtool on what it serves. SIMULATED: what fleet.py and simfixtures.py list (GPU, driver,
NVIDIA's and Amazon's repositories, the ECS agent, EC2), and here S3 (the component's S3Download is a copy of
the wheelhouse to its destination) and the runners themselves (tests/integrations_kit.py: each runs the
document's commands as its tool documents, in order; Packer, SSM Agent and AWSTOE are not here).
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import integrations_kit as ik
import pytest
from conftest import REPO, require
from contract import json_output
from fleetfixtures import *  # noqa: F403  (pytest fixtures)
from sim import IMAGE, checks_by_id, explain
from simfixtures import *  # noqa: F403  (pytest fixtures)

from gpuprep.bootcheck import UNIT_NAME

REPO_FILE = "/srv/repos/nvidia-container-toolkit.repo"  # fixture_repo.NVIDIA_REPO_FILE: no internet here
PROM_DIR = "/var/lib/prometheus/node-exporter"  # Debian's node_exporter textfile directory
OFFLINE_INSTALL = f"--repo-file {REPO_FILE} --image {IMAGE}"
AS_ROOT = "chmod +x {{ .Path }}; sudo {{ .Vars }} {{ .Path }}"  # the template's execute_command: as root


@pytest.fixture(scope="module")
def pipeline_hosts(base_tree, repos, wheelhouse):
    import fleet

    with fleet.booted(base_tree, repos, 2, wheelhouse=wheelhouse) as hosts:
        yield hosts


def packer_build(host, wheelhouse: Path, artifacts: Path, **variables: str) -> list[tuple[str, int, str]]:
    """Run the template's provisioners in order on ``host``; (what, exit code, output) for each, stopping at
    the first that fails, as Packer does."""
    done = []
    for p in ik.packer_provisioners({"wheelhouse": str(wheelhouse), "artifacts": str(artifacts), **variables}):
        a = p.attrs
        if p.kind == "shell" and "inline" in a:
            proc = host.run_script("\n".join(a["inline"]) + "\n")
            what = "; ".join(a["inline"])
        elif p.kind == "shell":
            assert a["execute_command"] == AS_ROOT, a
            env = dict(v.split("=", 1) for v in a.get("environment_vars", []))
            proc = host.run_script(Path(a["script"]).read_text(), env)
            what = Path(a["script"]).name
        elif p.kind == "file" and a.get("direction") == "download":
            Path(a["destination"]).parent.mkdir(parents=True, exist_ok=True)
            Path(a["destination"]).write_bytes(host.read_inside(a["source"]))
            done.append((f"download {a['source']}", 0, ""))
            continue
        else:
            host.upload(Path(str(a["source"]).rstrip("/")), a["destination"])
            done.append((f"upload {a['source']}", 0, ""))
            continue
        done.append((what, proc.returncode, proc.stdout + proc.stderr))
        if proc.returncode != 0:
            break
    return done


def test_packer_build_then_an_instance_from_the_image(pipeline_hosts, wheelhouse_dir, tmp_path):
    host = pipeline_hosts[0]
    artifacts = tmp_path / "artifacts"
    done = packer_build(host, wheelhouse_dir, artifacts, install_args=f"{OFFLINE_INSTALL} --prom-dir {PROM_DIR}",
                        doctor_args=f"--image {IMAGE}", seal_args=f"--keep-image {IMAGE}")
    failed = [d for d in done if d[1] != 0]
    assert not failed, "\n".join(f"{w}: exit {c}\n{out[-3000:]}" for w, c, out in failed)
    assert [w for w, _, _ in done if w.endswith(".sh")] == ["/tmp/gpuprep-wheelhouse/install.sh", "build-install.sh",
                                                             "build-doctor.sh", "build-verdict.sh", "build-seal.sh"]
    # gpuprep as the wheelhouse's install.sh puts it: a venv of the instance's python3 (3.9), /usr/sbin/gpuprep.
    installed = next(out for w, _, out in done if w.endswith("/install.sh"))
    assert "gpuprep install.sh: /usr/sbin/gpuprep -> /opt/gpuprep/bin/gpuprep" in installed, installed
    assert host.run(["readlink", "/usr/sbin/gpuprep"]).stdout.strip() == "/opt/gpuprep/bin/gpuprep"
    assert host.run(["/opt/gpuprep/bin/python", "-c", "import sys; print(sys.version_info[:2])"]).stdout == "(3, 9)\n"
    # The artefact: the build instance's doctor report, fetched before the verdict and the seal.
    report = json_output((artifacts / "gpuprep-doctor.json").read_text())
    assert report["status"] in ("ok", "warning"), explain(report)
    # Sealed: the report is gone from the image, the stamp is there, ECS is stopped.
    assert host.run(["test", "-e", "/tmp/gpuprep-doctor.json"], check=False).returncode == 1
    assert host.path("/etc/gpuprep/seal.json").is_file()
    assert host.unit_state("gpuprep-doctor.timer")["UnitFileState"] == "enabled"

    host.launch_from_image()
    gate = host.unit_state(UNIT_NAME)
    assert (gate["ActiveState"], gate["ExecMainStatus"]) == ("active", "0"), (gate, host.journal(UNIT_NAME))
    # The boot check and the doctor timer run the gpuprep of the venv, by the link install.sh made.
    for unit, line in ((UNIT_NAME, "/usr/sbin/gpuprep doctor --boot"),
                       ("gpuprep-doctor.service", "/usr/sbin/gpuprep doctor --no-container --prom")):
        exec_start = host.run(["systemctl", "show", unit, "-p", "ExecStart", "--value"]).stdout
        assert line in exec_start, (unit, exec_start)


def wait_for(host, what: str, poll, timeout: float = 60):
    from nspawn import wait

    return wait(what, timeout, poll, interval=0.5)


def test_the_doctor_timer_feeds_node_exporter(pipeline_hosts):
    """After the launch, the timer's service ran (OnBootSec=0) and node_exporter serves gpuprep's series."""
    require("promtool")
    host = pipeline_hosts[0]
    prom = f"{PROM_DIR}/gpuprep.prom"

    def ran():
        state = host.run(["systemctl", "show", "gpuprep-doctor.service", "-p", "ExecMainExitTimestampMonotonic",
                          "--value"]).stdout.strip()
        return state not in ("", "0") and host.path(prom).is_file()
    wait_for(host, "gpuprep-doctor.service to have run from its timer and written gpuprep.prom", ran)
    service = host.unit_state("gpuprep-doctor.service")
    # Ordered after the boot check and ecs.service, the run at boot sees the host as it came up: all ok.
    assert service["Result"] == "success" and service["ExecMainStatus"] == "0", (
        service, host.journal("gpuprep-doctor.service"), host.path(prom).read_text())
    assert host.unit_state("gpuprep-doctor.timer")["ActiveState"] == "active"

    def served() -> str | None:
        text = host.scrape()
        return text if "gpuprep_doctor_status" in text else None
    metrics = wait_for(host, "node_exporter on 127.0.0.1:9100 to serve gpuprep's series", served)
    from gpuprep import __version__

    assert "gpuprep_doctor_status 0\n" in metrics, _gpuprep_lines(metrics)
    assert f'gpuprep_build_info{{version="{__version__}"}} 1\n' in metrics
    assert re.search(r'^gpuprep_check_status\{check="gpu-count",group="gpu"\} 0$', metrics, re.M)
    assert re.search(r"^node_textfile_scrape_error 0$", metrics, re.M), _gpuprep_lines(metrics)
    first = _last_run(metrics)

    # Prometheus' own linter on what node_exporter serves of gpuprep, and on the file itself.
    for text in (_gpuprep_families(metrics), host.path(prom).read_text()):
        lint = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True, text=True,
                              timeout=30)
        assert lint.returncode == 0 and not (lint.stdout + lint.stderr).strip(), lint.stdout + lint.stderr

    # The next run (the timer's next, started by hand here) moves the last-run timestamp.
    host.run(["systemctl", "start", "gpuprep-doctor.service"], timeout=120)
    def moved() -> float | None:
        t = _last_run(host.scrape())
        return t if t > first else None
    later = wait_for(host, "the next doctor run to reach node_exporter", moved)
    assert later > first
    assert not list(host.path(PROM_DIR).glob(".*.tmp")), "a temp file left in the textfile directory"


def _gpuprep_lines(metrics: str) -> str:
    return "\n".join(line for line in metrics.splitlines() if "gpuprep" in line)


def _gpuprep_families(metrics: str) -> str:
    """gpuprep's families of a scrape, their HELP and TYPE lines included."""
    return "\n".join(line for line in metrics.splitlines()
                     if line.startswith(("gpuprep_", "# HELP gpuprep_", "# TYPE gpuprep_"))) + "\n"


def _last_run(metrics: str) -> float:
    m = re.search(r"^gpuprep_doctor_last_run_timestamp_seconds (\S+)$", metrics, re.M)
    assert m, _gpuprep_lines(metrics)
    return float(m.group(1))


def test_ssm_document_on_the_launched_instance(pipeline_hosts, wheelhouse_dir):
    """The SSM document's script, with its parameters as SSM Agent passes them (SSM_<name>), as a fleet runs it
    on an instance of the image: doctor, install (converged), an upgrade from a wheelhouse, seal."""
    host = pipeline_hosts[0]
    doc = ik.ssm_document()
    script = ik.ssm_script(doc)

    def ssm(**values: str):
        proc = host.run_script(script, ik.ssm_environment(doc, values))
        assert proc.returncode in (0, 1, 2, 3), proc  # never 194: SSM would reboot the instance
        return proc

    proc = ssm(command="doctor", arguments=f"--image {IMAGE}")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert json_output(proc.stdout)["status"] == "ok", explain(json_output(proc.stdout))

    proc = ssm(command="install", arguments=OFFLINE_INSTALL + f" --prom-dir {PROM_DIR}")
    report = json_output(proc.stdout)
    assert proc.returncode == 0 and report["status"] == "ok", explain(report) + proc.stderr[-2000:]

    host.upload(wheelhouse_dir, "/var/tmp/wheelhouse")  # make dist's folder, as a fleet would unpack it there
    proc = ssm(command="doctor", arguments="--no-container", wheelhouse="/var/tmp/wheelhouse")
    assert proc.returncode == 0 and json_output(proc.stdout)["command"] == "doctor", proc.stderr[-2000:]
    assert "gpuprep install.sh: /usr/sbin/gpuprep -> /opt/gpuprep/bin/gpuprep" in proc.stderr, proc.stderr[-2000:]

    # A newer knowledge table, placed by the document before doctor runs (validated first; root's, 0644).
    table = json.loads((REPO / "gpuprep/knowledge/data/xid.json").read_text())
    host.write("/var/tmp/xid.json", json.dumps({**table, "as_of": "2026-12-08"}))
    proc = ssm(command="doctor", arguments="--no-container", knowledgeFile="/var/tmp/xid.json")
    checks = {c["id"]: c for c in json_output(proc.stdout)["checks"]}
    assert checks["knowledge-files"]["status"] == "ok", checks["knowledge-files"]
    assert "/etc/gpuprep/knowledge.d/xid.json" in checks["knowledge-files"]["summary"]
    host.write("/var/tmp/broken.json", json.dumps({**table, "rows": []}))
    proc = ssm(command="doctor", knowledgeFile="/var/tmp/broken.json")
    assert proc.returncode == 2 and "needs at least 1 item" in proc.stderr, proc
    assert host.run(["ls", "/etc/gpuprep/knowledge.d"]).stdout.split() == ["xid.json"]

    proc = ssm(command="reboot")  # SSM refuses it by allowedValues; the script refuses it too
    assert proc.returncode == 2 and "not doctor, install or seal" in proc.stderr, proc
    proc = ssm(command="doctor", wheelhouse="/var/tmp/no-such-wheelhouse")
    assert proc.returncode == 2 and "no install.sh in /var/tmp/no-such-wheelhouse" in proc.stderr, proc

    proc = ssm(command="seal", arguments=f"--keep-image {IMAGE}")  # not without confirmSeal=yes
    assert proc.returncode == 2 and "run it with confirmSeal=yes" in proc.stderr, proc
    proc = ssm(command="seal", arguments=f"--keep-image {IMAGE}", confirmSeal="yes")
    report = json_output(proc.stdout)
    assert proc.returncode == 0 and report["command"] == "seal", explain(report) + proc.stderr[-2000:]


def test_image_builder_component_phases(pipeline_hosts, wheelhouse):
    host = pipeline_hosts[1]
    doc = ik.component()
    uri = f"s3://gpuprep-builds/{wheelhouse.name}"  # make dist's .tar.gz, as the README uploads it
    values = {"WheelhouseS3Uri": uri, "InstallArgs": OFFLINE_INSTALL,
              "SealArgs": f"--keep-image {IMAGE}", "DoctorArgs": f"--image {IMAGE}"}

    def phase(name: str) -> list[str]:
        ran = []
        for step, action, what in ik.component_commands(doc, name, values):
            if action == "S3Download":
                # SIMULATED: no S3 here. The object is make dist's tarball.
                for item in what:
                    assert item["source"] == uri, item
                    host.upload(wheelhouse, item["destination"])
            else:
                proc = host.run_script(what, shell="/bin/bash")
                assert proc.returncode == 0, f"{name}/{step} exited {proc.returncode}\n{proc.stdout[-3000:]}" \
                                             f"\n{proc.stderr[-3000:]}"
            ran.append(step)
        return ran

    assert phase("build") == ["DownloadWheelhouse", "InstallGpuprep", "Install", "Seal"]
    assert host.run(["readlink", "/usr/sbin/gpuprep"]).stdout.strip() == "/opt/gpuprep/bin/gpuprep"
    assert host.path("/etc/gpuprep/seal.json").is_file()
    assert phase("validate") == ["Doctor"]
    host.launch_from_image()  # Image Builder's test stage runs on an instance launched from the new image
    assert phase("test") == ["BootCheckPassed", "DoctorBoot", "Doctor"]
    rc, report, _ = host.doctor()
    container = checks_by_id(report).get("container-gpu") or next(
        c for c in report["checks"] if c["group"] == "container")
    assert rc == 0 and container["status"] == "ok", explain(report)
