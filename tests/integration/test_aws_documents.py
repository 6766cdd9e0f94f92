"""The SSM Command document and the Image Builder component validate against the JSON Schemas in
integrations/aws/schemas (gpuprep's own: AWS publishes none) and the rules a schema cannot state.

Real: jsonschema (Draft 2020-12, with its format checker for allowedPattern's regex). What each document
does is run in a simulated instance by tests/system/test_fleet_pipelines.py; these tests are the shape. Each
schema is also shown to reject what it must (a schema that accepts anything proves nothing).
"""

from __future__ import annotations

import copy

import integrations_kit as ik
import pytest


def test_ssm_document_is_valid():
    doc = ik.ssm_document()
    assert ik.schema_errors(doc, ik.SSM_SCHEMA) == []
    assert ik.ssm_semantic_errors(doc) == []


def test_ssm_document_uses_env_var_interpolation_only():
    """Parameters reach the script as SSM_<name> environment variables, never as {{ }} text in it: a value
    cannot become shell code, and allowedPattern is a second fence."""
    doc = ik.ssm_document()
    assert all(p["interpolationType"] == "ENV_VAR" for p in doc["parameters"].values())
    assert not ik.REFERENCE.search(ik.ssm_script(doc))
    assert doc["parameters"]["command"]["allowedValues"] == ["doctor", "install", "seal"]


def test_component_is_valid():
    doc = ik.component()
    assert ik.schema_errors(doc, ik.COMPONENT_SCHEMA) == []
    assert ik.component_semantic_errors(doc) == []
    assert [p["name"] for p in doc["phases"]] == ["build", "validate", "test"]
    build = [s["name"] for s in doc["phases"][0]["steps"]]
    assert build[-1] == "Seal", f"seal must be the last build step: {build}"


BREAKAGES_SSM = [
    ("schemaVersion", lambda d: d.update(schemaVersion="2.0")),
    ("unknown-top-key", lambda d: d.update(outputs={})),
    ("no-steps", lambda d: d.update(mainSteps=[])),
    ("unknown-action", lambda d: d["mainSteps"][0].update(action="aws:runBash")),
    ("runCommand-missing", lambda d: d["mainSteps"][0]["inputs"].pop("runCommand")),
    ("runCommand-number", lambda d: d["mainSteps"][0]["inputs"].update(runCommand=[1])),
    ("interpolation-type", lambda d: d["parameters"]["command"].update(interpolationType="TEXT")),
    ("parameter-type", lambda d: d["parameters"]["command"].update(type="string")),
    ("bad-regex", lambda d: d["parameters"]["arguments"].update(allowedPattern="^[a-z")),
    ("precondition", lambda d: d["mainSteps"][0]["precondition"].update(StringEquals=["platformType", "linux"])),
    ("timeout", lambda d: d["mainSteps"][0]["inputs"].update(timeoutSeconds="1h")),
]


@pytest.mark.parametrize("name, breaks", BREAKAGES_SSM, ids=[b[0] for b in BREAKAGES_SSM])
def test_ssm_schema_rejects(name, breaks):
    doc = copy.deepcopy(ik.ssm_document())
    breaks(doc)
    assert ik.schema_errors(doc, ik.SSM_SCHEMA), f"{name}: the schema accepted a broken document"


@pytest.mark.parametrize("name, breaks, check", [
    ("default-not-allowed", lambda d: d["parameters"]["command"].update(default="reboot"), "allowedValues"),
    ("default-off-pattern", lambda d: d["parameters"]["arguments"].update(default="; rm -rf /"), "allowedPattern"),
    ("undeclared-reference", lambda d: d["mainSteps"][0]["inputs"]["runCommand"].append("echo {{ nope }}"), "nope"),
    ("env-var-unused", lambda d: d["parameters"].update(extra={"type": "String", "interpolationType": "ENV_VAR"}),
     "SSM_extra"),
])
def test_ssm_semantics_reject(name, breaks, check):
    doc = copy.deepcopy(ik.ssm_document())
    breaks(doc)
    assert any(check in p for p in ik.ssm_semantic_errors(doc)), name


BREAKAGES_COMPONENT = [
    ("schemaVersion", lambda d: d.update(schemaVersion=2.0)),
    ("phase-name", lambda d: d["phases"][0].update(name="install")),
    ("action", lambda d: d["phases"][0]["steps"][1].update(action="ExecuteShell")),
    ("commands-missing", lambda d: d["phases"][0]["steps"][1].update(inputs={})),
    ("commands-string", lambda d: d["phases"][0]["steps"][1].update(inputs={"commands": "gpuprep install"})),
    ("s3-source", lambda d: d["phases"][0]["steps"][0]["inputs"][0].update(source="https://example.com/w")),
    ("parameter-type", lambda d: d["parameters"][0]["WheelhouseS3Uri"].update(type="String")),
    ("step-name", lambda d: d["phases"][0]["steps"][1].update(name="install gpuprep")),
    ("on-failure", lambda d: d["phases"][0]["steps"][1].update(onFailure="Retry")),
]


@pytest.mark.parametrize("name, breaks", BREAKAGES_COMPONENT, ids=[b[0] for b in BREAKAGES_COMPONENT])
def test_component_schema_rejects(name, breaks):
    doc = copy.deepcopy(ik.component())
    breaks(doc)
    assert ik.schema_errors(doc, ik.COMPONENT_SCHEMA), f"{name}: the schema accepted a broken component"


def test_component_semantics_reject():
    doc = copy.deepcopy(ik.component())
    doc["phases"].append(copy.deepcopy(doc["phases"][1]))
    doc["phases"][0]["steps"][2]["inputs"]["commands"].append("gpuprep install {{ Nope }}")
    problems = ik.component_semantic_errors(doc)
    assert any("phase names repeat" in p for p in problems) and any("Nope" in p for p in problems), problems


def test_schemas_say_they_are_ours():
    import json

    for path in (ik.SSM_SCHEMA, ik.COMPONENT_SCHEMA):
        schema = json.loads(path.read_text())
        assert "not published by AWS" in schema["$comment"] and "gpuprep's own schema" in schema["title"]


@pytest.mark.parametrize("value, allowed", [
    ("", True), ("/var/tmp/toolkit-security.json", True), ("/etc/gpuprep/incoming/xid-2027.json", True),
    ("toolkit-security.json", False), ("/var/tmp/table.txt", False), ("/var/tmp/$(reboot).json", False),
    ("/var/tmp/a b.json", False),
])
def test_ssm_knowledge_file_is_an_absolute_json_path(value, allowed):
    """knowledgeFile reaches the script as $SSM_knowledgeFile; allowedPattern keeps it a plain .json path (gpuprep
    reads only *.json in knowledge.d)."""
    import re

    pattern = ik.ssm_document()["parameters"]["knowledgeFile"]["allowedPattern"]
    assert bool(re.search(pattern, value)) is allowed
