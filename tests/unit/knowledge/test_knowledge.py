"""gpuprep's knowledge tables: the schema (gpuprep's small validator against the real ``jsonschema``), the reader and
/etc/gpuprep/knowledge.d (owner, mode, validity, newer as_of wins), the doctor checks that use them (driver floor,
age, refused files) and ``gpuprep knowledge``.

Real: the shipped tables and schema, the jsonschema library, the CLI (typer's CliRunner), files with real owners
and modes (chown needs root). Simulated: the GPU host (tests/hosttree.py trees, the driver as files), and in
test_age_warns_past_180_days the date (the tables are dated today; no clock of this machine can be 2027).
"""

from __future__ import annotations

import copy
import datetime as dt
import json
import os
from pathlib import Path

import hosttree
import jsonschema
import pytest
from conftest import require_root
from contract import json_output
from typer.testing import CliRunner

from gpuprep import knowledge
from gpuprep.cli import app
from gpuprep.gpu import kernel_log
from gpuprep.knowledge import schema

pytestmark = pytest.mark.allow_subp("rpm", "systemctl")

SCHEMA = json.loads(knowledge.SCHEMA.read_text())
SHIPPED = {p.stem: json.loads(p.read_text()) for p in sorted(knowledge.DATA.glob("*.json"))}


def ours_accepts(doc) -> bool:
    try:
        schema.validate(doc, SCHEMA)
    except schema.Invalid:
        return False
    return True


def theirs_accepts(doc) -> bool:
    return jsonschema.Draft202012Validator(SCHEMA).is_valid(doc)


def raised_floor() -> dict:
    """A toolkit-security table a fleet might drop in: a later bulletin raising the floor to 1.20.0. TEST FIXTURE:
    bulletin 99999 and CVE-2099-0001 are made up, so no reader takes them for NVIDIA's."""
    doc = copy.deepcopy(SHIPPED["toolkit-security"])
    doc["as_of"] = "2026-12-08"
    doc["rows"].append({"bulletin": 99999, "cves": ["CVE-2099-0001"], "fixed_in": "1.20.0",
                        "source": "test fixture, not an NVIDIA bulletin"})
    return doc


def mutations() -> list[tuple[str, dict]]:
    """Invalid documents, one problem each."""
    out = []

    def variant(name: str, table: str, change) -> None:
        doc = copy.deepcopy(SHIPPED[table])
        change(doc)
        out.append((name, doc))

    variant("no as_of", "xid", lambda d: d.pop("as_of"))
    variant("as_of not a date", "xid", lambda d: d.update(as_of="Dec 7"))
    variant("unknown table", "xid", lambda d: d.update(table="gpu-prices"))
    variant("unknown top key", "docker-cdi", lambda d: d.update(extra=1))
    variant("empty rows", "driver-security", lambda d: d.update(rows=[]))
    variant("fixed_in not a version", "toolkit-security", lambda d: d["rows"][0].update(fixed_in="soon"))
    variant("cve malformed", "toolkit-security", lambda d: d["rows"][0]["cves"].append("CVE-26-1"))
    variant("bulletin a string", "dcgm-security", lambda d: d["rows"][0].update(bulletin="5857"))
    variant("bulletin true", "dcgm-security", lambda d: d["rows"][0].update(bulletin=True))
    variant("toolkit without packages", "toolkit-security", lambda d: d.pop("packages"))
    variant("driver branch not a number", "driver-security", lambda d: d["rows"][0]["fixed"].update(Rx="1.2"))
    variant("xid severity unknown", "xid", lambda d: d["rows"][0].update(severity="fatal"))
    variant("xid without source", "xid", lambda d: d["rows"][0].pop("source"))
    variant("xid resolution unknown", "xid", lambda d: d["recovery_actions"][0].update(resolution="pray"))
    variant("gpus zero", "ec2-gpu-instances", lambda d: d["rows"][0]["sizes"].update(xlarge=0))
    variant("nvswitch a string", "ec2-gpu-instances", lambda d: d["rows"][0].update(nvswitch="yes"))
    variant("efa not a count", "ec2-gpu-instances", lambda d: d["rows"][-1].update(efa={"36xlarge": "four"}))
    variant("engine feature unknown", "docker-cdi", lambda d: d["rows"][0].update(feature="warp-drive"))
    variant("cvss above 10", "toolkit-security", lambda d: d["rows"][-1].update(cvss=11))
    variant("empty source", "docker-cdi", lambda d: d["rows"][0].update(source=""))
    variant("floor row key unknown", "toolkit-security", lambda d: d["rows"][0].update(fixd_in="1.2.3"))
    return out


# -- the schema: ours and jsonschema agree -------------------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_every_shipped_table_is_valid_for_both_validators(name):
    assert ours_accepts(SHIPPED[name]) and theirs_accepts(SHIPPED[name])
    assert knowledge.shipped()[name].origin == knowledge.SHIPPED


def raised_driver_floor() -> dict:
    """TEST FIXTURE: a made-up later bulletin raising R580's floor."""
    doc = copy.deepcopy(SHIPPED["driver-security"])
    doc["as_of"] = "2026-12-08"
    doc["rows"].append({"bulletin": 99998, "cves": ["CVE-2099-0002"], "fixed": {"580": "580.200.01"},
                        "source": "test fixture, not an NVIDIA bulletin"})
    return doc


def test_the_fixture_tables_are_valid_for_both_validators():
    for doc in (raised_floor(), raised_driver_floor()):
        assert ours_accepts(doc) and theirs_accepts(doc), doc.get("table")


@pytest.mark.parametrize("name,doc", mutations(), ids=[m[0] for m in mutations()])
def test_invalid_tables_are_refused_by_both_validators(name, doc):
    assert not theirs_accepts(doc), f"jsonschema accepts {name}: the mutation is no test"
    assert not ours_accepts(doc)


def test_a_keyword_outside_the_subset_is_a_schema_error_not_a_silent_pass():
    with pytest.raises(schema.SchemaError):
        schema.validate([1, 1], {"type": "array", "uniqueItems": True})


def test_the_validator_names_where_the_problem_is():
    doc = copy.deepcopy(SHIPPED["toolkit-security"])
    doc["rows"][2]["fixed_in"] = "soon"
    with pytest.raises(knowledge.KnowledgeInvalid) as err:
        knowledge.parse(json.dumps(doc), "t.json")
    assert "rows[2].fixed_in" in err.value.reason and "soon" in err.value.reason


@pytest.mark.parametrize("change,words", [
    (lambda d: d["rows"].append(copy.deepcopy(d["rows"][0])), "bulletin 5582 is listed twice"),
    (lambda d: d.update(as_of="2999-01-01"), "in the future"),
])
def test_rules_beyond_the_schema(change, words):
    doc = copy.deepcopy(SHIPPED["toolkit-security"])
    change(doc)
    with pytest.raises(knowledge.KnowledgeInvalid, match=words):
        knowledge.parse(json.dumps(doc), "t.json")


# -- knowledge.d ----------------------------------------------------------------------------------------------------
def drop(root: Path, name: str, doc, mode: int = 0o644, uid: int = 0) -> Path:
    d = root / "etc/gpuprep/knowledge.d"
    d.mkdir(parents=True, exist_ok=True)
    p = d / name
    p.write_text(doc if isinstance(doc, str) else json.dumps(doc))
    os.chmod(p, mode)
    os.chown(p, uid, 0)
    return p


def load(root: Path) -> knowledge.Knowledge:
    from gpuprep.host import Host

    return knowledge.load(Host(root))


def test_a_newer_table_wins_table_by_table_and_an_older_one_is_passed_over(tmp_path):
    require_root()
    drop(tmp_path, "floor.json", raised_floor())
    old = copy.deepcopy(SHIPPED["xid"])
    old["as_of"] = "2026-01-01"
    drop(tmp_path, "xid.json", old)
    k = load(tmp_path)
    assert k["toolkit-security"].origin == "/etc/gpuprep/knowledge.d/floor.json"
    assert k["xid"].origin == knowledge.SHIPPED and "xid as of 2026-01-01" in k.older[0]
    assert k["driver-security"].origin == knowledge.SHIPPED and not k.refused
    knowledge.activate(k)
    from gpuprep.packages import security

    assert security.floor() == "1.20.0" and "CVE-2099-0001" in security.describe("1.19.1")


@pytest.mark.parametrize("content,mode,uid,words", [
    ("{not json", 0o644, 0, "not JSON"),
    ({"table": "xid"}, 0o644, 0, "'as_of' is missing"),
    (None, 0o646, 0, "group- or world-writable (mode 0646)"),
    (None, 0o664, 0, "group- or world-writable"),
    (None, 0o644, 65534, "owned by uid 65534, not root"),
])
def test_a_bad_file_is_refused_in_one_line_and_the_table_in_use_is_kept(tmp_path, content, mode, uid, words):
    require_root()
    drop(tmp_path, "floor.json", raised_floor() if content is None else content, mode, uid)
    k = load(tmp_path)
    [refused] = k.refused
    assert words in refused.reason and "\n" not in refused.line()
    assert k["toolkit-security"].origin == knowledge.SHIPPED
    assert k["toolkit-security"].doc == SHIPPED["toolkit-security"]


def test_a_writable_directory_refuses_every_file(tmp_path):
    require_root()
    drop(tmp_path, "floor.json", raised_floor())
    os.chmod(tmp_path / "etc/gpuprep/knowledge.d", 0o777)
    k = load(tmp_path)
    assert k["toolkit-security"].origin == knowledge.SHIPPED
    assert "directory is group- or world-writable" in k.refused[0].reason


# -- doctor ---------------------------------------------------------------------------------------------------------
def doctor(root: Path, *args: str) -> tuple[dict, dict]:
    result = CliRunner().invoke(app, ["--root", str(root), "--json", "doctor", "--no-container", *args],
                                env={"DOCKER_HOST": None})
    report = json_output(result.stdout)
    return report, {c["id"]: c for c in report["checks"]}


def test_doctor_warns_on_a_driver_below_bulletin_5861_and_names_the_lock_to_lift(tmp_path):
    root = hosttree.build_named("ecs-ami-2026-08-driver-580-159", tmp_path / "t")
    _, checks = doctor(root)
    c = checks["driver-security"]
    assert c["status"] == "warning", c
    assert "580.159.03" in c["summary"] and "580.178.04" in c["summary"] and "bulletin 5861" in c["summary"]
    assert "5821" not in c["summary"]  # 580.159.03 meets bulletin 5821's floor
    assert "versionlock delete kmod-nvidia-latest-dkms nvidia-driver nvidia-driver-cuda" in c["hint"]
    assert "reboot" in c["hint"] and "nvidia-container-toolkit" not in c["hint"]
    assert c["data"]["locks"] == ["kmod-nvidia-latest-dkms-3:580.159.03-1.amzn2023.*",
                                  "nvidia-driver-3:580.159.03-1.amzn2023.*",
                                  "nvidia-driver-cuda-3:580.159.03-1.amzn2023.*"]


def test_doctor_passes_a_driver_at_the_floor_and_names_each_side_that_lags(tmp_path):
    spec = hosttree.load_spec("ecs-ami-2026-08-driver-580-159")
    spec.module = spec.userland = "580.178.04"
    _, checks = doctor(hosttree.build(tmp_path / "ok", spec))
    assert checks["driver-security"]["status"] == "ok", checks["driver-security"]
    assert "580.178.04" in checks["driver-security"]["summary"]
    spec.module = "580.159.03"  # updated userland, the old module still loaded (no reboot yet)
    _, checks = doctor(hosttree.build(tmp_path / "lag", spec))
    assert checks["driver-security"]["status"] == "warning"
    assert "kernel module 580.159.03" in checks["driver-security"]["summary"]
    spec.module = spec.userland = "535.288.01"  # R535: bulletin 5821's floor 535.309.01
    _, checks = doctor(hosttree.build(tmp_path / "r535", spec))
    assert "535.309.01" in checks["driver-security"]["summary"] and "5821" in checks["driver-security"]["summary"]


def test_install_says_in_its_plan_that_the_driver_is_below_its_floor(tmp_path):
    """install does not update the driver (a reboot, the image's lock): preflight says so, with the same fix."""
    root = hosttree.build_named("ecs-ami-2026-08-driver-580-159", tmp_path / "t")
    (root / "etc/yum.repos.d").mkdir(parents=True)
    result = CliRunner().invoke(app, ["--root", str(root), "--json", "install", "--dry-run", "--only", "preflight"])
    assert result.exit_code == 0, result.output
    step = next(s for s in json_output(result.stdout)["steps"] if s["id"] == "preflight")
    assert "580.159.03" in step["summary"] and "580.178.04" in step["summary"] and "bulletin 5861" in step["summary"]
    assert "versionlock delete kmod-nvidia-latest-dkms" in step["summary"]
    assert step["data"]["driver_security"]["floor"] == "580.178.04"


def test_a_table_in_knowledge_d_changes_what_doctor_says_with_no_code_change(tmp_path):
    require_root()
    spec = hosttree.load_spec("ecs-ami-2026-08-driver-580-159")
    spec.module = spec.userland = "580.178.04"
    root = hosttree.build(tmp_path / "t", spec)
    drop(root, "driver.json", raised_driver_floor())
    _, checks = doctor(root)
    assert checks["driver-security"]["status"] == "warning"
    summary = checks["driver-security"]["summary"]
    assert "580.200.01" in summary and "CVE-2099-0002" in summary
    assert checks["knowledge-files"]["status"] == "ok"
    os.chmod(root / "etc/gpuprep/knowledge.d/driver.json", 0o666)
    _, checks = doctor(root)
    assert checks["driver-security"]["status"] == "ok"  # the shipped table is kept
    assert checks["knowledge-files"]["status"] == "warning"
    assert "driver.json: refused, group- or world-writable" in checks["knowledge-files"]["summary"]


def test_age_warns_past_180_days_naming_the_oldest_table_and_how_to_update(tmp_path, monkeypatch):
    root = hosttree.build_named("no-gpu", tmp_path / "t")
    _, checks = doctor(root)
    assert checks["knowledge-age"]["status"] == "ok"
    monkeypatch.setattr(knowledge, "today", lambda: dt.date(2027, 6, 6))  # 181 days after 2026-12-07
    _, checks = doctor(root)
    c = checks["knowledge-age"]
    assert c["status"] == "warning" and "181 days old" in c["summary"]
    assert "oldest is dcgm-security, as of 2026-12-07" in c["summary"]
    assert "/etc/gpuprep/knowledge.d/" in c["hint"] and "knowledge validate FILE" in c["hint"]


def test_list_checks_names_the_new_checks():
    out = CliRunner().invoke(app, ["doctor", "--list-checks"]).stdout
    for check in ("driver-security", "dcgm-security", "knowledge-age", "knowledge-files"):
        assert f"packages/{check}" in out


# -- gpuprep knowledge ---------------------------------------------------------------------------------------------
def test_knowledge_lists_tables_origin_and_age_and_validates_a_file(tmp_path):
    require_root()
    drop(tmp_path, "floor.json", raised_floor())
    result = CliRunner().invoke(app, ["--root", str(tmp_path), "--json", "knowledge"])
    assert result.exit_code == 0, result.output
    tables = {t["table"]: t for t in json_output(result.stdout)["tables"]}
    assert tables["toolkit-security"]["origin"] == "/etc/gpuprep/knowledge.d/floor.json"
    assert tables["xid"]["origin"] == "shipped" and tables["xid"]["as_of"] == "2026-12-07"
    good = tmp_path / "etc/gpuprep/knowledge.d/floor.json"
    result = CliRunner().invoke(app, ["knowledge", "validate", str(good)])
    assert result.exit_code == 0 and "valid toolkit-security table" in result.stdout
    assert "would be used" in result.stdout
    os.chmod(good, 0o666)
    result = CliRunner().invoke(app, ["--root", str(tmp_path), "knowledge"])
    assert result.exit_code == 1 and "floor.json: refused, group- or world-writable" in result.stderr
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({**raised_floor(), "rows": [{"bulletin": 1}]}))
    result = CliRunner().invoke(app, ["knowledge", "validate", str(bad)])
    assert result.exit_code == 2 and result.stderr.count("error:") == 1 and "'cves' is missing" in result.stderr


# -- the facts themselves ------------------------------------------------------------------------------------------
def test_every_xid_the_fleet_agents_treat_as_fatal_is_critical():
    """ECS agent ecs-agent/gpu/dcgm/client.go, EKS node monitoring agent dcgm_policies.go, NVIDIA's buckets."""
    fatal = [46, 48, 54, 62, 63, 64, 74, 79, 95, 109, 110, 119, 120, 136, 140, 142, 143, 151, 155, 156, 158,
             *range(144, 151), *range(162, 166), 159, 168]
    for code in fatal:
        assert kernel_log.xid_class(code).severity == "critical" and kernel_log.fatal_to_instance(code), code
    assert not kernel_log.fatal_to_instance(13) and kernel_log.xid_class(157).meaning == "not classified by gpuprep"


@pytest.mark.parametrize("text,severity,action", [
    ("GPU recovery action changed from 0x0 (None) to 0x1 (GPU Reset Required)", "critical", "reset it"),
    ("GPU recovery action changed from 0x0 (None) to 0x2 (Node Reboot Required)", "critical", "reboot"),
    ("GPU recovery action changed from 0x1 (GPU Reset Required) to 0x3 (Drain P2P)", "critical", "peer-to-peer"),
    ("GPU recovery action changed from 0x1 (GPU Reset Required) to 0x0 (None)", "warning", "nothing"),
])
def test_xid_154_takes_its_recovery_action_from_its_text(text, severity, action):
    [event] = kernel_log.parse_kernel_log(f"NVRM: Xid (PCI:0000:53:00): 154, pid=1, name=x, {text}")
    assert event.severity == severity and action in event.action, event
    assert event.meaning.endswith(text.rsplit("(", 1)[1].rstrip(")"))


def test_instance_types_carry_nvswitch_and_efa():
    from gpuprep.ec2.instance_types import lookup

    nvswitch = {"p4d", "p4de", "p5", "p5e", "p5en", "p6-b200", "p6-b300", "p6e-gb200"}
    for family, f in __import__("gpuprep.ec2.instance_types", fromlist=["families"]).families().items():
        assert f.nvswitch is (family in nvswitch), family
    assert (lookup("p5.48xlarge").efa, lookup("p5en.48xlarge").efa, lookup("p4d.24xlarge").efa) == (32, 16, 4)
    assert (lookup("p6-b200.48xlarge").efa, lookup("p6-b300.48xlarge").efa) == (8, 16)
    assert lookup("g5.xlarge").efa is None and lookup("p5.48xlarge").nvswitch
    assert lookup("g4ad.xlarge") is None  # AMD GPUs


def test_a_link_in_knowledge_d_never_reads_outside_the_root(tmp_path):
    """Inside --root a link is the image's: an absolute one names the image's path, one that climbs out is refused.
    Real files and links; /etc/gpuprep/knowledge.d of this machine is never read."""
    require_root()
    outside = tmp_path / "outside.json"
    outside.write_text(json.dumps(raised_floor()))
    root = tmp_path / "root"
    d = root / "etc/gpuprep/knowledge.d"
    d.mkdir(parents=True)
    os.symlink(str(outside), d / "absolute.json")  # inside the image: ROOT/<tmp>/outside.json, which is not there
    os.symlink("../../../../outside.json", d / "climbs.json")
    k = load(root)
    assert k["toolkit-security"].origin == knowledge.SHIPPED
    reasons = {r.path.rsplit("/", 1)[1]: r.reason for r in k.refused}
    assert set(reasons) == {"absolute.json", "climbs.json"}, reasons
