"""What `gpuprep --json ...` printed, checked against the schema gpuprep ships (gpuprep/schema/output.schema.json).

Every test that reads gpuprep's --json output reads it through ``json_output`` (tests/unit/test_output_schema.py
fails on a ``json.loads`` of a command's stdout that does not), so each real report the suite provokes, from a
fixture tree, a private dockerd, dnf, systemd or the booted simulated instances, is held to the schema, and the
schema to what gpuprep really prints. The validator is the ``jsonschema`` library (the test extra), draft 2020-12.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

SCHEMA = Path(__file__).resolve().parent.parent / "gpuprep" / "schema" / "output.schema.json"


@functools.cache
def validator(path: Path = SCHEMA, kind: str = "") -> Any:
    """A draft 2020-12 validator of the schema at ``path`` (the checkout's, or an installed wheel's copy); with
    ``kind``, of that one document kind (``doctor-report``), whose errors say more than "not one of the kinds"."""
    from jsonschema import Draft202012Validator

    schema = json.loads(path.read_text(encoding="utf-8"))
    Draft202012Validator.check_schema(schema)
    if kind:
        schema = {**{k: v for k, v in schema.items() if k != "oneOf"}, "$ref": f"#/$defs/{kind}"}
    return Draft202012Validator(schema)


def kind_of(doc: dict[str, Any]) -> str:
    """The document kind (a name in the schema's $defs) ``doc`` looks like, to explain why it is not valid."""
    command = doc.get("command")
    if "exit_code" in doc:
        return "error"
    if command == "doctor":
        return "doctor-report" if "status" in doc else "check-list"
    if command == "knowledge":
        return "knowledge-validation" if "valid" in doc else "knowledge-listing"
    return "run-report" if "status" in doc else "step-list"


def check_output(doc: Any, schema: Path = SCHEMA) -> dict[str, Any]:
    """``doc`` itself when it is valid gpuprep --json output; else the test fails naming the first problem and
    where it is."""
    from jsonschema.exceptions import best_match

    if validator(schema).is_valid(doc):
        return doc
    kind = kind_of(doc) if isinstance(doc, dict) else ""
    error = best_match(validator(schema, kind).iter_errors(doc))
    where = "/".join(str(p) for p in error.absolute_path) or "(top level)"
    raise AssertionError(f"gpuprep --json output ({kind or type(doc).__name__}) does not match {schema.name} at "
                         f"{where}: {error.message}\n{json.dumps(doc)[:3000]}")


def json_output(text: str | bytes, schema: Path = SCHEMA) -> dict[str, Any]:
    """Parse what `gpuprep --json` printed (one JSON object, nothing else) and check it against the schema."""
    return check_output(json.loads(text), schema)
