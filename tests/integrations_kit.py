"""Reading and running what integrations/ ships: the Packer template's provisioners, the SSM Command document,
the Image Builder component. The shape tests (tests/integration) and the runs in simulated instances
(tests/system/test_fleet_pipelines.py) read the files through here, so both see the same steps.

Runners imitate only the sequencing the real tools document: Packer runs provisioners in file order (a
``shell`` script uploaded and run through ``execute_command`` with ``environment_vars``; ``file`` uploads and
downloads); SSM's aws:runShellScript runs ``runCommand`` as one shell script, with an ENV_VAR parameter as
``SSM_<name>`` in its environment; AWSTOE's ExecuteBash runs a step's ``commands`` as one bash script with
``{{ Name }}`` replaced by the parameter's value, phases and steps in document order.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
INTEGRATIONS = REPO / "integrations"
SCRIPTS = INTEGRATIONS / "scripts"
PACKER_TEMPLATE = INTEGRATIONS / "packer" / "gpuprep-ecs-gpu.pkr.hcl"
SSM_DOCUMENT = INTEGRATIONS / "aws" / "gpuprep-run-command.json"
COMPONENT = INTEGRATIONS / "aws" / "gpuprep-imagebuilder-component.yaml"
SSM_SCHEMA = INTEGRATIONS / "aws" / "schemas" / "ssm-command-document-2.2.schema.json"
COMPONENT_SCHEMA = INTEGRATIONS / "aws" / "schemas" / "imagebuilder-component-1.0.schema.json"
REFERENCE = re.compile(r"\{\{\s*([A-Za-z0-9_.:-]+)\s*\}\}")


# -- the documents ------------------------------------------------------------------------------
def ssm_document() -> dict:
    return json.loads(SSM_DOCUMENT.read_text())


def component() -> dict:
    import yaml

    return yaml.safe_load(COMPONENT.read_text())


def schema_errors(doc: dict, schema_path: Path) -> list[str]:
    """Every way ``doc`` breaks the schema, as "path: message" lines (empty: valid)."""
    import jsonschema

    schema = json.loads(schema_path.read_text())
    validator = jsonschema.Draft202012Validator(schema, format_checker=jsonschema.FormatChecker())
    jsonschema.Draft202012Validator.check_schema(schema)
    return [f"{'/'.join(map(str, e.absolute_path)) or '(top)'}: {e.message}"
            for e in sorted(validator.iter_errors(doc), key=lambda e: list(map(str, e.absolute_path)))]


def ssm_semantic_errors(doc: dict) -> list[str]:
    """What SSM checks beyond shape: defaults allowed and matching their pattern, references declared,
    and an ENV_VAR parameter used through its environment variable."""
    problems = []
    params = doc.get("parameters", {})
    text = json.dumps(doc.get("mainSteps", []))
    for name, p in params.items():
        if "default" in p and "allowedValues" in p and p["default"] not in p["allowedValues"]:
            problems.append(f"{name}: default {p['default']!r} is not among allowedValues")
        if "default" in p and "allowedPattern" in p and not re.search(p["allowedPattern"], str(p["default"])):
            problems.append(f"{name}: default {p['default']!r} does not match allowedPattern")
        if p.get("interpolationType") == "ENV_VAR" and f"SSM_{name}" not in text:
            problems.append(f"{name}: interpolationType ENV_VAR but $SSM_{name} is never used")
    for ref in REFERENCE.findall(text):
        if ref not in params and not ref.startswith("ssm:"):
            problems.append(f"{{{{ {ref} }}}} names no parameter")
    names = [s["name"] for s in doc.get("mainSteps", [])]
    if len(names) != len(set(names)):
        problems.append(f"step names repeat: {names}")
    return problems


def component_semantic_errors(doc: dict) -> list[str]:
    problems = []
    params = {name for p in doc.get("parameters", []) for name in p}
    phases = [p["name"] for p in doc.get("phases", [])]
    if len(phases) != len(set(phases)):
        problems.append(f"phase names repeat: {phases}")
    for phase in doc.get("phases", []):
        steps = [s["name"] for s in phase["steps"]]
        if len(steps) != len(set(steps)):
            problems.append(f"{phase['name']}: step names repeat: {steps}")
    for ref in REFERENCE.findall(json.dumps(doc.get("phases", []))):
        if ref not in params and not re.match(r"^(build|validate|test)\.", ref):
            problems.append(f"{{{{ {ref} }}}} names no parameter")
    return problems


def component_commands(doc: dict, phase: str, values: dict[str, str]) -> list[tuple[str, str, object]]:
    """(step name, action, what to run) for ``phase``: an ExecuteBash step's commands as one script with the
    parameters substituted; another action's inputs, substituted."""
    defaults = {name: spec.get("default", "") for p in doc.get("parameters", []) for name, spec in p.items()}
    values = {**defaults, **values}

    def sub(text: str) -> str:
        return REFERENCE.sub(lambda m: str(values[m.group(1)]), text)

    out = []
    for p in doc["phases"]:
        if p["name"] != phase:
            continue
        for step in p["steps"]:
            if step["action"] == "ExecuteBash":
                out.append((step["name"], "ExecuteBash", "\n".join(sub(c) for c in step["inputs"]["commands"]) + "\n"))
            else:
                out.append((step["name"], step["action"], json.loads(sub(json.dumps(step["inputs"])))))
    return out


def ssm_script(doc: dict) -> str:
    """The one aws:runShellScript step's runCommand, as the script SSM Agent writes and runs."""
    steps = [s for s in doc["mainSteps"] if s["action"] == "aws:runShellScript"]
    assert len(steps) == 1, steps
    commands = steps[0]["inputs"]["runCommand"]
    return (commands if isinstance(commands, str) else "\n".join(commands)) + "\n"


def ssm_environment(doc: dict, values: dict[str, str]) -> dict[str, str]:
    """``SSM_<name>`` for each ENV_VAR parameter: the value given, else its default."""
    env = {}
    for name, p in doc.get("parameters", {}).items():
        if p.get("interpolationType") == "ENV_VAR":
            env[f"SSM_{name}"] = str(values.get(name, p.get("default", "")))
    return env


# -- the Packer template ------------------------------------------------------------------------
@dataclass
class Provisioner:
    kind: str  # "shell" or "file"
    attrs: dict[str, object] = field(default_factory=dict)


def packer_provisioners(variables: dict[str, str]) -> list[Provisioner]:
    """The build's provisioners in file order, with var.X, local.X and path.root substituted. The template
    is in ``packer fmt`` layout (a test checks that), which is what this reads."""
    text = PACKER_TEMPLATE.read_text()
    defaults = dict(re.findall(r'^variable "(\w+)" \{.*?^  default\s+=\s+"?([^"\n]*)"?$', text, re.M | re.S))
    values = {**defaults, **variables}
    locals_block = text[text.index("locals {"):text.index("source ")]
    local_defs = dict(re.findall(r'^  (\w+)\s+=\s+"(.*)"$', locals_block, re.M))
    # `name = var.X != "" ? var.X : "DEFAULT"`: the variable when given, else the default.
    for name, var, default in re.findall(r'^  (\w+)\s+=\s+var\.(\w+) != "" \? var\.\2 : "(.*)"$', locals_block, re.M):
        local_defs[name] = str(values[var]) if values.get(var) else default

    def sub(s: str) -> str:
        s = s.replace("${path.root}", str(PACKER_TEMPLATE.parent))
        s = re.sub(r"\$\{local\.(\w+)\}", lambda m: sub(local_defs[m.group(1)]), s)
        return re.sub(r"\$\{var\.(\w+)\}", lambda m: str(values[m.group(1)]), s)

    build = text[text.index("\nbuild {"):]
    out = []
    for m in re.finditer(r'^  provisioner "(\w+)" \{\n(.*?)^  \}', build, re.M | re.S):
        attrs: dict[str, object] = {}
        for key, raw in re.findall(r"^\s+(\w+)\s+=\s+(.+)$", m.group(2), re.M):
            raw = raw.strip()
            if raw.startswith("["):
                attrs[key] = [sub(v) for v in json.loads(raw)]
            elif raw.startswith('"'):
                attrs[key] = sub(json.loads(raw))
            elif raw.startswith("local."):
                attrs[key] = sub(local_defs[raw[len("local."):]])
            else:
                attrs[key] = raw
        out.append(Provisioner(m.group(1), attrs))
    return out
