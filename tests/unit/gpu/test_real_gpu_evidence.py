"""What tests/gpu/real_gpu.sh recorded on the accelerator machine on 2026-12-07 (tests/fixtures/real-gpu/2026-12-07/,
its README says what ran and what did not), read with the script's own reader (tests/gpu/summarize.py) and checked
claim by claim: the GPU views agree with each other and with nvidia-gpu-info.json, the negative cases are named by
the check that should name them, the install refusals say why, and the timings are there.

Every record is a real run on one H100 (Engine 26.1.5, driver 580.159.04). Two stand-ins took part, named so in the
README: the nvidia runtime and the CDI spec generator of the script of that day (both removed since: the script now
runs NVIDIA's real toolkit; tests/unit/gpu/test_real_toolkit_evidence.py reads that run).
"""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path

import pytest

from gpuprep.gpu import query as gpu_query

REPO = Path(__file__).resolve().parents[3]
RUN = REPO / "tests" / "fixtures" / "real-gpu" / "2026-12-07"
UUID = re.compile(r"^GPU-[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")

_spec = importlib.util.spec_from_file_location("summarize", REPO / "tests" / "gpu" / "summarize.py")
summarize = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(summarize)


@pytest.fixture(scope="module")
def recs() -> dict[str, dict]:
    return summarize.records(RUN)


@pytest.fixture(scope="module")
def host_gpus() -> list[dict]:
    return summarize.host_gpus(RUN)


def test_the_host_is_a_real_gpu_with_a_well_formed_uuid(host_gpus):
    assert len(host_gpus) >= 1
    for g in host_gpus:
        assert UUID.match(g["uuid"]) and g["name"].startswith("NVIDIA") and g["driver_version"] == "580.159.04"


def test_nvml_nvidia_smi_and_ecs_inits_file_name_the_same_gpus(recs, host_gpus):
    outside = [g["uuid"] for g in host_gpus]
    nvml = summarize.checks(recs["doctor-json"])["gpu-nvml"]["data"]
    assert [g["uuid"] for g in nvml["gpus"]] == outside
    driver, smi_q = gpu_query.parse_smi_q((RUN / "nvidia-smi-q.txt").read_text())
    assert [g.uuid for g in smi_q] == outside and driver == nvml["driver_version"]
    written = json.loads((RUN / "nvidia-gpu-info.host.json").read_text())
    assert written == {"DriverVersion": nvml["driver_version"], "GPUIDs": outside}


def test_doctor_ran_live_against_engine_26_in_text_and_json(recs):
    report = summarize.report(recs["doctor-json"])
    c = {x["id"]: x for x in report["checks"]}
    assert c["docker-engine"]["status"] == "ok" and "Docker 26.1.5" in c["docker-engine"]["summary"]
    assert c["gpu-nvml"]["status"] == "ok" and c["gpu-count"]["status"] == "ok"
    assert c["toolkit-cdi-specs"]["status"] == "ok"  # the good spec fits the host
    text = recs["doctor-text"]["stdout"]  # the text report: the verdict line first, problems by name
    assert text.startswith("GPUPREP WARNING - ecs-init, ecs-gpu-sharing-mps, packages-installed")
    assert "gpu        [ok]" in text and "container  [ok]" in text
    for x in report["checks"]:
        assert not x["summary"].startswith("check failed"), x


def test_ecs_gpu_info_agrees_with_the_host_and_a_changed_uuid_is_critical(recs):
    host_file = summarize.checks(recs["ecs-gpu-info-host"])["ecs-gpu-info"]
    assert host_file["status"] == "ok" and "matches this host" in host_file["summary"]
    changed = json.loads((RUN / "nvidia-gpu-info.changed.json").read_text())["GPUIDs"][-1]
    verdict = summarize.checks(recs["ecs-gpu-info-changed"])["ecs-gpu-info"]
    assert verdict["status"] == "critical" and changed in verdict["summary"]


@pytest.mark.parametrize("record, says", [
    ("neg-missing-node-doctor", "device node /dev/nvidia8 does not exist"),
    ("neg-stale-driver-doctor", "libnvidia-ml.so.570.86.15, which does not exist"),
])
def test_a_spec_that_no_longer_fits_is_critical_naming_why(recs, record, says):
    verdict = summarize.checks(recs[record])["toolkit-cdi-specs"]
    assert verdict["status"] == "critical" and says in verdict["summary"] and verdict["hint"]


def test_runc_as_the_default_is_named_and_the_fix_doctor_names_clears_it(recs):
    c = summarize.checks(recs["neg-runc-default-doctor"])
    assert c["gpu-container"]["status"] == "critical" and c["gpu-container"]["data"]["link"] == "runtime-not-default"
    assert c["docker-default-runtime"]["status"] == "warning"
    assert recs["neg-runc-default-fix"]["rc"] == 0
    fixed = summarize.checks(recs["neg-runc-default-fixed-doctor"])
    assert fixed["gpu-container"]["status"] == "ok" and fixed["docker-default-runtime"]["status"] == "ok"


def test_install_registers_the_runtime_proves_it_with_the_hosts_uuid_and_a_second_run_changes_nothing(recs, host_gpus):
    assert recs["install-on-ubuntu-refused"]["rc"] == 3
    assert "Ubuntu 24.04 is not a platform gpuprep install supports" in recs["install-on-ubuntu-refused"]["stderr"]
    first = {s["id"]: s for s in summarize.report(recs["install-json"])["steps"]}
    assert recs["install-json"]["rc"] == 0
    assert first["docker-runtime"]["status"] == "changed" and first["docker-reload"]["status"] == "changed"
    assert first["gpu-check"]["status"] == "ok"
    assert first["gpu-check"]["data"]["uuids"] == first["gpu-check"]["data"]["host_uuids"] == \
        [g["uuid"] for g in host_gpus]
    again = summarize.report(recs["install-again-json"])
    assert recs["install-again-json"]["rc"] == 0 and again["status"] == "ok"
    pids = [line.split()[-1] for line in (RUN / "pids.txt").read_text().splitlines() if line.strip()]
    assert pids[0] == pids[1] == pids[2]  # reloaded (SIGHUP), not restarted; the second run touched nothing
    assert pids[3] != pids[2]  # --docker-cdi: features.cdi needs a restart


def test_both_routes_prove_the_gpu_where_dockers_cdi_is_on(recs, host_gpus):
    install = {s["id"]: s for s in summarize.report(recs["install-docker-cdi-json"])["steps"]}
    assert recs["install-docker-cdi-json"]["rc"] == 0 and install["gpu-check"]["status"] == "ok"
    container = summarize.checks(recs["doctor-cdi-json"])["gpu-container"]
    assert container["status"] == "ok"
    routes = {r["route"]: r for r in container["data"]["routes"]}
    assert set(routes) == {"default-runtime", "cdi"}
    for route in routes.values():
        assert route["ok"] and route["uuids"] == [g["uuid"] for g in host_gpus], route


@pytest.mark.parametrize("route", ["standin", "cdi"])
def test_each_gpu_asked_by_uuid_or_index_is_exactly_that_gpu_and_an_unknown_uuid_is_refused(recs, host_gpus, route):
    """As the ECS agent assigns a task's GPU (NVIDIA_VISIBLE_DEVICES=<uuid>), and as Docker's CDI names them."""
    for g in host_gpus:
        for asked in (f"uuid-{g['index']}", f"index-{g['index']}"):
            seen = summarize.seen_in_container(recs[f"{route}-{asked}"])
            assert seen == {"rc": 0, "uuids": [g["uuid"]], "gpu_nodes": [f"nvidia{g['index']}"]}, (route, asked)
    every = summarize.seen_in_container(recs[f"{route}-all"])
    assert every["rc"] == 0 and every["uuids"] == [g["uuid"] for g in host_gpus]
    assert recs[f"{route}-unknown-uuid"]["rc"] != 0


@pytest.mark.parametrize("name", ["timings.json"])
def test_timings_of_seven_runs_with_the_baseline_in_the_same_run(name):
    t = json.loads((RUN / name).read_text())
    assert t["baseline"] == "import_typer" and t["runs"] == 7
    for key in ("import_typer", "doctor_no_container", "doctor_no_container_baseline", "doctor_live", "nvidia_smi_q",
                "container_all_gpus", "container_cdi_all"):
        assert len(t["ms"][key]) == 7 and t["median_ms"][key] > 0
    # The Engine reached without docker-py: doctor --no-container at under half its time before (main's).
    assert t["median_ms"]["doctor_no_container"] < 0.5 * t["median_ms"]["doctor_no_container_baseline"]


def test_doctor_no_longer_imports_docker_py_and_before_it_did():
    def imported(text: str) -> set[str]:
        return {line.rsplit("|", 1)[1].strip() for line in text.splitlines() if "|" in line}

    assert not {"docker", "requests", "urllib3", "psutil"} & imported((RUN / "importtime.txt").read_text())
    assert {"docker", "requests"} <= imported((RUN / "importtime.baseline.txt").read_text())
