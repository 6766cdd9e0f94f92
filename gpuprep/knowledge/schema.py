"""A JSON Schema validator for exactly the keywords ``schema/knowledge.schema.json`` uses (draft 2020-12).

Why not the ``jsonschema`` library: gpuprep runs as root on every host of a fleet, installed from a wheelhouse;
jsonschema 4.18+ brings ``referencing`` and ``rpds-py`` (a compiled Rust extension: one wheel per platform and
Python) for what is here some 80 lines. The subset is closed: a keyword this module does not know makes
``validate`` raise ``SchemaError``, so the schema cannot grow past what is checked. tests/unit/knowledge/
test_schema.py runs every shipped table, every fixture and a set of invalid documents through both this and the
real ``jsonschema`` and asserts they agree.
"""

from __future__ import annotations

import re
from typing import Any

# Keywords with no effect on validation, and the ones ``_check`` implements.
ANNOTATIONS = frozenset({"$schema", "$id", "title", "description", "$defs", "$comment"})
KEYWORDS = frozenset({"type", "required", "properties", "additionalProperties", "allOf", "if", "then", "const",
                      "enum", "$ref", "items", "minItems", "pattern", "minLength", "minimum", "maximum",
                      "minProperties", "propertyNames"})


class SchemaError(Exception):
    """The schema uses a keyword outside the subset: a bug in gpuprep, not in the document."""


class Invalid(Exception):
    def __init__(self, where: str, message: str) -> None:
        super().__init__(f"{where or 'the document'}: {message}")
        self.where, self.message = where, message


def _is_type(value: Any, name: str) -> bool:
    if name == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if name == "number":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    kinds = {"object": dict, "array": list, "string": str, "boolean": bool}
    if name == "null":
        return value is None
    return isinstance(value, kinds[name])


def _at(where: str, key: str | int) -> str:
    return f"{where}[{key}]" if isinstance(key, int) else (f"{where}.{key}" if where else key)


def validate(document: Any, schema: dict[str, Any]) -> None:
    """Raise ``Invalid`` (the first problem, with where it is) unless ``document`` satisfies ``schema``."""
    _check(document, schema, schema, "")


def _check(value: Any, schema: dict[str, Any], root: dict[str, Any], where: str) -> None:
    unknown = set(schema) - KEYWORDS - ANNOTATIONS
    if unknown:
        raise SchemaError(f"keyword(s) {', '.join(sorted(unknown))} outside gpuprep's validator")
    if "$ref" in schema:
        ref = schema["$ref"]
        if not ref.startswith("#/$defs/"):
            raise SchemaError(f"$ref {ref}: only #/$defs/NAME is supported")
        _check(value, root["$defs"][ref[len("#/$defs/"):]], root, where)
    if "type" in schema and not _is_type(value, schema["type"]):
        raise Invalid(where, f"{_show(value)} is not of type {schema['type']}")
    if "const" in schema and value != schema["const"]:
        raise Invalid(where, f"{_show(value)} is not {_show(schema['const'])}")
    if "enum" in schema and value not in schema["enum"]:
        raise Invalid(where, f"{_show(value)} is not one of {', '.join(map(_show, schema['enum']))}")
    if isinstance(value, str):
        if len(value) < schema.get("minLength", 0):
            raise Invalid(where, "is empty" if not value else f"{_show(value)} is too short")
        if "pattern" in schema and not re.search(schema["pattern"], value):
            raise Invalid(where, f"{_show(value)} does not match {schema['pattern']}")
    if _is_type(value, "number"):
        if "minimum" in schema and value < schema["minimum"]:
            raise Invalid(where, f"{value} is less than {schema['minimum']}")
        if "maximum" in schema and value > schema["maximum"]:
            raise Invalid(where, f"{value} is more than {schema['maximum']}")
    if isinstance(value, list):
        if len(value) < schema.get("minItems", 0):
            raise Invalid(where, f"needs at least {schema['minItems']} item(s)")
        if "items" in schema:
            for i, item in enumerate(value):
                _check(item, schema["items"], root, _at(where, i))
    if isinstance(value, dict):
        _check_object(value, schema, root, where)
    for sub in schema.get("allOf", []):
        _check(value, sub, root, where)
    if "if" in schema and _passes(value, schema["if"], root):
        _check(value, schema.get("then", {}), root, where)


def _check_object(value: dict[str, Any], schema: dict[str, Any], root: dict[str, Any], where: str) -> None:
    for key in schema.get("required", []):
        if key not in value:
            raise Invalid(where, f"{key!r} is missing")
    if len(value) < schema.get("minProperties", 0):
        raise Invalid(where, f"needs at least {schema['minProperties']} key(s)")
    props = schema.get("properties", {})
    for key, item in value.items():
        if "propertyNames" in schema:
            _check(key, schema["propertyNames"], root, _at(where, key))
        if key in props:
            _check(item, props[key], root, _at(where, key))
        elif schema.get("additionalProperties") is False:
            raise Invalid(where, f"unexpected key {key!r}")
        elif isinstance(schema.get("additionalProperties"), dict):
            _check(item, schema["additionalProperties"], root, _at(where, key))


def _passes(value: Any, schema: dict[str, Any], root: dict[str, Any]) -> bool:
    try:
        _check(value, schema, root, "")
    except Invalid:
        return False
    return True


def _show(value: Any) -> str:
    text = repr(value) if not isinstance(value, str) else f'"{value}"'
    return text if len(text) <= 60 else text[:57] + "..."
