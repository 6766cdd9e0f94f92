"""The schema of gpuprep's --json output (gpuprep/schema/output.schema.json, docs/contract.md): a valid draft 2020-12
schema, shipped in the wheel, naming exactly the ids the code has, strict where the contract is; and every test
that reads a command's --json output checks it against the schema (tests/contract.py ``json_output``).

Real: the ``jsonschema`` library, setuptools building the wheel (pip wheel), the CLI in process."""

from __future__ import annotations

import copy
import json
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from contract import SCHEMA, check_output, json_output
from typer.testing import CliRunner

from gpuprep.cli import app

REPO = Path(__file__).resolve().parents[2]


def schema() -> dict:
    return json.loads(SCHEMA.read_text(encoding="utf-8"))


def test_the_schema_is_a_draft_2020_12_schema_of_contract_version_1():
    from jsonschema import Draft202012Validator

    doc = schema()
    Draft202012Validator.check_schema(doc)
    assert doc["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    # The contract's version is in $id (docs/contract.md): it moves only if a field changed meaning.
    assert re.fullmatch(r"https://gpuprep\.invalid/schema/v1/output\.schema\.json", doc["$id"])
    kinds = {ref["$ref"].rsplit("/", 1)[1] for ref in doc["oneOf"]}
    assert kinds == {"run-report", "doctor-report", "error", "step-list", "check-list", "knowledge-listing",
                     "knowledge-validation"}


def test_the_ids_in_the_schema_are_the_codes_own():
    """A new step, check, group or knowledge table is added to the schema with its code: this test names it."""
    from gpuprep import knowledge
    from gpuprep.doctor import all_checks
    from gpuprep.install import install_steps
    from gpuprep.seal import seal_steps

    defs = schema()["$defs"]
    assert defs["install-step-id"]["enum"] == [s.id for s in install_steps()]
    assert defs["seal-step-id"]["enum"] == [s.id for s in seal_steps()]
    checks = all_checks()
    assert defs["check-id"]["enum"] == [c.id for c in checks]
    assert set(defs["check-group"]["enum"]) == {c.group for c in checks}
    tables = json.loads(knowledge.SCHEMA.read_text())["properties"]["table"]["enum"]
    assert sorted(defs["knowledge-table"]["enum"]) == sorted(tables)


def invoke(*args: str) -> str:
    result = CliRunner().invoke(app, list(args), env={"DOCKER_HOST": None})
    return result.stdout


@pytest.mark.parametrize("argv", [
    ("--json", "install", "--list-steps"),
    ("--json", "seal", "--list-steps"),
    ("--json", "doctor", "--list-checks"),
    ("--json", "knowledge"),
    ("--json", "knowledge", "validate", str(REPO / "gpuprep/knowledge/data/xid.json")),
    ("--json", "install", "--runtime", "bogus"),  # an error before the run: exit 2
])
def test_what_the_cli_prints_is_valid(argv):
    json_output(invoke(*argv))


def _doctor(tmp_path: Path) -> dict:
    import hosttree

    root = hosttree.build_named("healthy-p5-h100x8", tmp_path / "host")
    return json_output(invoke("--root", str(root), "--json", "doctor", "--no-container"))


def _install_plan(tmp_path: Path) -> dict:
    root = tmp_path / "root"
    shutil.copytree(REPO / "tests/fixtures/distros/amzn-2023", root)
    plan = json_output(invoke("--root", str(root), "--json", "install", "--dry-run", "--only",
                              "docker-runtime,ecs-config"))
    assert plan["status"] == "planned", plan.get("error")
    return plan


def _broken(doc: dict, where: str, value) -> dict:
    """``doc`` with the value at ``where`` (a/b/0/c) set to ``value``, or removed where ``value`` is ``...``."""
    doc = copy.deepcopy(doc)
    *path, last = [int(p) if p.isdigit() else p for p in where.split("/")]
    parent = doc
    for p in path:
        parent = parent[p]
    if value is ...:
        del parent[last]
    else:
        parent[last] = value
    return doc


DOCTOR_BREAKS = [
    ("status", "fine"),  # statuses are closed sets
    ("checks/0/status", "changed"),
    ("checks/0/id", "gpu-brand-new"),  # ids are the contract's list
    ("checks/0/group", "misc"),
    ("checks/0/hint", ...),  # always there, empty when there is nothing to do
    ("checks/0/fixed", True),  # a check's keys are closed: a new one is added to the schema and the contract
    ("extra", 1),  # so are the report's
    ("version", "v1"),
    ("platform/id", ...),
    ("checks/0/duration_ms", -1),
]


@pytest.mark.allow_subp("nvidia-smi", "rpm", "systemctl")
@pytest.mark.parametrize("where, value", DOCTOR_BREAKS)
def test_a_doctor_report_off_the_contract_is_refused(tmp_path, where, value):
    """Each break of a real report is caught: the schema is strict where the contract is, so it can fail."""
    with pytest.raises(AssertionError, match="does not match output.schema.json"):
        check_output(_broken(_doctor(tmp_path), where, value))


RUN_BREAKS = [
    ("status", "skipped"),
    ("steps/0/status", "warning"),
    ("steps/0/id", "preflight-2"),
    ("steps/4/diff", ["not", "text"]),  # docker-runtime's diff of daemon.json
    ("steps/10/commands", "systemctl enable ecs"),  # ecs-config's: each an argv
    ("command", "doctor"),
    ("dry_run", "yes"),
    ("error", "preflight: failed"),  # an error belongs to a failed run
    ("selection", {"docker": "docker 25"}),  # not <name>-[<epoch>:]<version>-<release>
    ("steps/0/reference", "bad-input"),  # only a failed step carries its error's reference
]


@pytest.mark.allow_subp("systemctl", "rpm")
@pytest.mark.parametrize("where, value", RUN_BREAKS)
def test_an_install_report_off_the_contract_is_refused(tmp_path, where, value):
    with pytest.raises(AssertionError, match="does not match output.schema.json"):
        check_output(_broken(_install_plan(tmp_path), where, value))


def test_errors_and_lists_off_the_contract_are_refused():
    error = json_output(invoke("--json", "doctor", "--image", "no spaces allowed"))
    assert error["exit_code"] == 3 and error["status"] == "unknown"
    for where, value in [("exit_code", 2), ("exit_code", 194), ("status", "failed"), ("command", "validate"),
                         ("reference", "Not Kebab"), ("reference", ...)]:
        with pytest.raises(AssertionError, match="does not match"):
            check_output(_broken(error, where, value))
    steps = json_output(invoke("--json", "seal", "--list-steps"))
    with pytest.raises(AssertionError, match="does not match"):
        check_output(_broken(steps, "steps/1/id", "packages"))  # install's, not seal's


def test_a_failed_run_carries_its_reference_on_the_report_and_the_failed_step():
    """The reference the run report and its failed step carry (errors.GpuprepError.reference) is in the schema: a
    failed report validates, and one whose error lost its reference, or names none, is refused."""
    from gpuprep.report import RunReport, StepResult, StepStatus

    failed = StepResult("packages", StepStatus.FAILED, "the repository does not answer", hint="fix it",
                        reference="repository-unreachable")
    platform = {"id": "amzn", "version_id": "2023", "name": "Amazon Linux 2023", "family": "amzn"}
    report = RunReport("install", platform, [failed], exit_code=1, error="packages: the repository does not "
                       "answer", hint="fix it", reference="repository-unreachable").as_dict()
    assert check_output(report)["steps"][0]["reference"] == report["reference"] == "repository-unreachable"
    for where, value in [("reference", ...), ("steps/0/reference", "Not Kebab"), ("error", ...)]:
        with pytest.raises(AssertionError, match="does not match"):
            check_output(_broken(report, where, value))


@pytest.mark.allow_subp("python", "python3", sys.executable.rsplit("/", 1)[-1], "git")
def test_the_built_wheel_ships_the_schema(tmp_path):
    """setuptools' package data (pyproject.toml) puts every schema file into the wheel; pip builds it from a copy of
    the sources, as packaging/wheelhouse.py does, so the checkout is not written to."""
    src = tmp_path / "src"
    for name in ("gpuprep", "pyproject.toml", "setup.py", "README.md", "LICENSE"):
        copy_ = shutil.copytree if (REPO / name).is_dir() else shutil.copy2
        copy_(REPO / name, src / name, **({"ignore": shutil.ignore_patterns("__pycache__")}
                                          if (REPO / name).is_dir() else {}))
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                           "-w", str(tmp_path / "dist"), str(src)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    names = set(zipfile.ZipFile(next((tmp_path / "dist").glob("gpuprep-*.whl"))).namelist())
    assert "gpuprep/schema/output.schema.json" in names
    wanted = {p.relative_to(REPO).as_posix() for p in (REPO / "gpuprep").rglob("*.schema.json")}
    assert wanted <= names, wanted - names


def test_every_read_of_a_commands_json_goes_through_the_schema():
    """A ``json.loads`` of a command's stdout in tests/ is a report nobody checks against the schema: read it with
    ``contract.json_output``. A line that reads something else (a helper program's JSON, made-up check ids) says
    why in a ``# schema:`` comment."""
    found = []
    for path in sorted((REPO / "tests").rglob("*.py")):
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if re.search(r"json\.loads\([^)]*(stdout|\bout\b|piped)", line) and "# schema: " not in line:
                found.append(f"{path.relative_to(REPO)}:{n}: {line.strip()}")
    assert not found, "\n".join(found)
