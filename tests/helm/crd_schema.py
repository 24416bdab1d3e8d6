"""The part of apiextensions.k8s.io/v1 that the chart's CRDs use, re-stated in Python for tests without an apiserver.

Three jobs, each a plain function over parsed YAML:

* ``structural_errors`` - the rules a kube-apiserver applies before it accepts a CRD schema ("structural schema",
  plus the v1 restrictions on keywords, defaults and ``x-kubernetes-*`` extensions);
* ``validation_errors`` / ``with_defaults`` - what the apiserver does to an object: default, then validate
  (type, properties, required, enum, items, additionalProperties, minimum/maximum, length, pattern; ``format`` is
  ignored). Unknown fields are reported, as ``kubectl apply`` does with its default strict field validation;
* ``jsonpath_parse`` / ``jsonpath_lookup`` / ``jsonpath_schema`` - the simple JSONPath subset printer columns use
  (``.a.b``, ``[0]``, ``['dotted\\.key']``).

Everything returns lists of messages or values rather than raising, so a test can show every problem at once.
"""

from __future__ import annotations

import copy
import re

SCHEMA_TYPES = {"object", "array", "string", "integer", "number", "boolean"}
# OpenAPI v3 keywords apiextensions v1 accepts in a CRD schema. `$ref`, `definitions`, `dependencies`,
# `patternProperties`, `additionalItems`, `id` and `$schema` are refused by the apiserver.
ALLOWED_KEYWORDS = {
    "description", "type", "format", "title", "default", "nullable", "enum", "example", "externalDocs",
    "maximum", "exclusiveMaximum", "minimum", "exclusiveMinimum", "multipleOf",
    "maxLength", "minLength", "pattern", "maxItems", "minItems", "uniqueItems", "maxProperties", "minProperties",
    "required", "items", "properties", "additionalProperties", "allOf", "oneOf", "anyOf", "not",
    "x-kubernetes-preserve-unknown-fields", "x-kubernetes-embedded-resource", "x-kubernetes-int-or-string",
    "x-kubernetes-list-type", "x-kubernetes-list-map-keys", "x-kubernetes-map-type", "x-kubernetes-validations",
}
JUNCTORS = ("allOf", "anyOf", "oneOf", "not")
PRINTER_COLUMN_TYPES = {"integer", "number", "string", "boolean", "date"}
MISSING = object()


# --------------------------------------------------------------------------------------------- structural schema


def structural_errors(schema: dict) -> list[str]:
    """Return why ``schema`` (a version's ``openAPIV3Schema``) would be refused; empty when it is accepted.

    >>> structural_errors({"type": "object", "properties": {"spec": {"type": "object"}}})
    ['spec: object without properties, additionalProperties or x-kubernetes-preserve-unknown-fields']
    """
    errors: list[str] = []
    if schema.get("type") != "object":
        errors.append("<root>: type must be object")
    _walk_structural(schema, "", errors, root=True)
    metadata = schema.get("properties", {}).get("metadata")
    if metadata is not None:
        extra = set(metadata) - {"type", "description", "properties"}
        extra_props = set(metadata.get("properties", {})) - {"name", "generateName"}
        if extra or extra_props or metadata.get("type") != "object":
            errors.append("metadata: only type object and restrictions of name/generateName are allowed")
    return errors


def _walk_structural(node: dict, path: str, errors: list[str], *, root: bool = False, in_junctor: bool = False):
    where = path or "<root>"
    if not isinstance(node, dict):
        errors.append(f"{where}: schema must be a mapping")
        return
    for key in node:
        if key not in ALLOWED_KEYWORDS:
            errors.append(f"{where}: keyword {key!r} is not allowed in a CRD schema")
    if in_junctor:
        for key in ("description", "type", "default", "additionalProperties", "nullable"):
            if key in node:
                errors.append(f"{where}: {key!r} is not allowed inside allOf/anyOf/oneOf/not")
    typ = node.get("type")
    preserve = node.get("x-kubernetes-preserve-unknown-fields")
    int_or_string = node.get("x-kubernetes-int-or-string")
    if preserve is not None and preserve is not True:
        errors.append(f"{where}: x-kubernetes-preserve-unknown-fields must be true when set")
    if not in_junctor:
        if typ is None and not (preserve or int_or_string):
            errors.append(f"{where}: missing type")
        elif typ is not None and typ not in SCHEMA_TYPES:
            errors.append(f"{where}: unknown type {typ!r}")
    if node.get("uniqueItems") is True:
        errors.append(f"{where}: uniqueItems: true is not allowed")
    if node.get("additionalProperties") is False:
        errors.append(f"{where}: additionalProperties: false is not allowed")
    if "properties" in node and "additionalProperties" in node:
        errors.append(f"{where}: properties and additionalProperties are mutually exclusive")
    if typ == "object" and not in_junctor:
        is_root_metadata = path == "metadata"
        if not ({"properties", "additionalProperties"} & set(node) or preserve or is_root_metadata):
            errors.append(f"{where}: object without properties, additionalProperties or "
                          "x-kubernetes-preserve-unknown-fields")
    if typ == "array" and "items" not in node and not in_junctor:
        errors.append(f"{where}: array without items")
    if "x-kubernetes-list-type" in node:
        if typ != "array":
            errors.append(f"{where}: x-kubernetes-list-type on a non-array")
        if node["x-kubernetes-list-type"] not in ("atomic", "set", "map"):
            errors.append(f"{where}: x-kubernetes-list-type must be atomic, set or map")
    if "x-kubernetes-map-type" in node:
        if typ != "object":
            errors.append(f"{where}: x-kubernetes-map-type on a non-object")
        if node["x-kubernetes-map-type"] not in ("atomic", "granular"):
            errors.append(f"{where}: x-kubernetes-map-type must be atomic or granular")
    if "required" in node:
        missing = [r for r in node["required"] if r not in node.get("properties", {})]
        if missing and not in_junctor:
            errors.append(f"{where}: required names fields that are not properties: {missing}")
    if "enum" in node:
        for value in node["enum"]:
            if not _type_matches(value, typ, node.get("nullable", False)):
                errors.append(f"{where}: enum value {value!r} is not of type {typ}")
    if "format" in node and typ == "integer" and node["format"] not in ("int32", "int64"):
        errors.append(f"{where}: integer format must be int32 or int64")
    if "default" in node:
        if path == "metadata" or path.startswith("metadata."):
            errors.append(f"{where}: defaults are not allowed in metadata")
        else:
            for problem in validation_errors(node["default"], node, where, strict_unknown=True):
                errors.append(f"{where}: default does not validate: {problem}")
    for name, child in node.get("properties", {}).items():
        _walk_structural(child, f"{path}.{name}" if path else name, errors, in_junctor=in_junctor)
    if isinstance(node.get("additionalProperties"), dict):
        _walk_structural(node["additionalProperties"], f"{where}.*", errors, in_junctor=in_junctor)
    if "items" in node:
        if not isinstance(node["items"], dict):
            errors.append(f"{where}: items must be one schema (tuples are not allowed)")
        else:
            _walk_structural(node["items"], f"{where}[]", errors, in_junctor=in_junctor)
    for junctor in JUNCTORS:
        if junctor in node:
            branches = node[junctor] if junctor != "not" else [node[junctor]]
            for i, branch in enumerate(branches):
                _walk_structural(branch, f"{where}.{junctor}[{i}]", errors, in_junctor=True)


# --------------------------------------------------------------------------------------------- objects


def _type_matches(value, typ: str | None, nullable: bool) -> bool:
    if value is None:
        return nullable
    if typ is None:
        return True
    if typ == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if typ == "number":
        return isinstance(value, int | float) and not isinstance(value, bool)
    if typ == "boolean":
        return isinstance(value, bool)
    if typ == "string":
        return isinstance(value, str)
    if typ == "array":
        return isinstance(value, list)
    if typ == "object":
        return isinstance(value, dict)
    return False


def validation_errors(value, schema: dict, path: str = "", *, strict_unknown: bool = True) -> list[str]:
    """Return why ``value`` does not satisfy ``schema``; empty when it does.

    ``strict_unknown`` reports fields the schema does not know (the apiserver would prune them, and
    ``kubectl apply`` refuses them by default). The root ``metadata`` is opaque, as for the apiserver.

    >>> validation_errors({"vlanID": 5000}, {"type": "object", "properties": {"vlanID": {
    ...     "type": "integer", "maximum": 4094}}})
    ['vlanID: 5000 is greater than the maximum 4094']
    """
    errors: list[str] = []
    _validate(value, schema, path, errors, strict_unknown)
    return errors


def _validate(value, schema: dict, path: str, errors: list[str], strict: bool) -> None:
    where = path or "<root>"
    typ = schema.get("type")
    if value is None and schema.get("nullable"):
        return
    if not _type_matches(value, typ, False):
        if value is None and typ is not None:
            errors.append(f"{where}: null is not allowed (type {typ})")
        elif typ is not None:
            errors.append(f"{where}: {value!r} is not of type {typ}")
        return
    if "enum" in schema and value not in schema["enum"]:
        errors.append(f"{where}: {value!r} is not one of {schema['enum']}")
    if isinstance(value, int | float) and not isinstance(value, bool):
        if "minimum" in schema and value < schema["minimum"]:
            errors.append(f"{where}: {value} is less than the minimum {schema['minimum']}")
        if "maximum" in schema and value > schema["maximum"]:
            errors.append(f"{where}: {value} is greater than the maximum {schema['maximum']}")
    if isinstance(value, str):
        if "minLength" in schema and len(value) < schema["minLength"]:
            errors.append(f"{where}: shorter than {schema['minLength']}")
        if "maxLength" in schema and len(value) > schema["maxLength"]:
            errors.append(f"{where}: longer than {schema['maxLength']}")
        if "pattern" in schema and not re.search(schema["pattern"], value):
            errors.append(f"{where}: {value!r} does not match {schema['pattern']!r}")
    if isinstance(value, list):
        if "minItems" in schema and len(value) < schema["minItems"]:
            errors.append(f"{where}: fewer than {schema['minItems']} items")
        if "maxItems" in schema and len(value) > schema["maxItems"]:
            errors.append(f"{where}: more than {schema['maxItems']} items")
        if "items" in schema:
            for i, item in enumerate(value):
                _validate(item, schema["items"], f"{where}[{i}]", errors, strict)
    if isinstance(value, dict):
        props = schema.get("properties", {})
        for name in schema.get("required", []):
            if name not in value:
                errors.append(f"{path + '.' if path else ''}{name}: required field is missing")
        extra = schema.get("additionalProperties")
        for name, item in value.items():
            child = f"{path}.{name}" if path else name
            if name in props:
                if child == "metadata" and not path:
                    if not isinstance(item, dict):
                        errors.append("metadata: must be an object")
                    continue
                _validate(item, props[name], child, errors, strict)
            elif isinstance(extra, dict):
                _validate(item, extra, child, errors, strict)
            elif strict and not schema.get("x-kubernetes-preserve-unknown-fields") and extra is not True:
                errors.append(f"{child}: unknown field")


def with_defaults(value, schema: dict):
    """Return a copy of ``value`` with the schema's defaults filled in where fields are absent (the apiserver's
    structural defaulting: applied at every object level that is present, never creating missing parents).

    >>> with_defaults({"spec": {}}, {"type": "object", "properties": {"spec": {"type": "object", "properties": {
    ...     "disable": {"type": "boolean", "default": False}}}}})
    {'spec': {'disable': False}}
    """
    value = copy.deepcopy(value)
    _default(value, schema)
    return value


def _default(value, schema: dict) -> None:
    if isinstance(value, dict):
        for name, child in schema.get("properties", {}).items():
            if name not in value and "default" in child:
                value[name] = copy.deepcopy(child["default"])
            if name in value:
                _default(value[name], child)
        if isinstance(schema.get("additionalProperties"), dict):
            for item in value.values():
                _default(item, schema["additionalProperties"])
    elif isinstance(value, list) and "items" in schema:
        for item in value:
            _default(item, schema["items"])


# --------------------------------------------------------------------------------------------- JSONPath


_SEGMENT = re.compile(r"\.((?:\\.|[^.\[\]\\])+)|\[(\d+)\]|\['((?:\\.|[^'\\])*)'\]")


def jsonpath_parse(expr: str) -> list[str | int] | None:
    """Split a printer-column JSONPath into field names and indexes; None when it is not in the simple subset.

    Backslash escapes are removed from names, as Kubernetes' JSONPath parser does.

    >>> jsonpath_parse(".spec.podAffinity.matchLabels['ipam\\\\.spidernet\\\\.io/app\\\\-namespace']")
    ['spec', 'podAffinity', 'matchLabels', 'ipam.spidernet.io/app-namespace']
    >>> jsonpath_parse(".status.current.ips[0].interface")
    ['status', 'current', 'ips', 0, 'interface']
    """
    if not expr.startswith("."):
        return None
    parts: list[str | int] = []
    pos = 0
    while pos < len(expr):
        m = _SEGMENT.match(expr, pos)
        if not m:
            return None
        if m.group(2) is not None:
            parts.append(int(m.group(2)))
        else:
            raw = m.group(1) if m.group(1) is not None else m.group(3)
            parts.append(re.sub(r"\\(.)", r"\1", raw))
        pos = m.end()
    return parts or None


def jsonpath_lookup(obj, expr: str):
    """Value at ``expr`` in ``obj``, or ``MISSING`` (what kubectl prints as ``<none>``)."""
    parts = jsonpath_parse(expr)
    if parts is None:
        raise ValueError(f"unsupported JSONPath {expr!r}")
    for part in parts:
        if isinstance(part, int):
            if not isinstance(obj, list) or part >= len(obj):
                return MISSING
        elif not isinstance(obj, dict) or part not in obj:
            return MISSING
        obj = obj[part]
    return obj


def jsonpath_schema(schema: dict, expr: str) -> dict | None:
    """Sub-schema that ``expr`` points to, or None when the path leaves the schema."""
    parts = jsonpath_parse(expr)
    if parts is None:
        return None
    node = schema
    for part in parts:
        if isinstance(part, int):
            if node.get("type") != "array":
                return None
            node = node["items"]
        elif part in node.get("properties", {}):
            node = node["properties"][part]
        elif isinstance(node.get("additionalProperties"), dict):
            node = node["additionalProperties"]
        else:
            return None
    return node
