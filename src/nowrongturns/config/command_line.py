"""Values given on Snakemake's `--config` command line, read as the YAML scalars they are where
the schema wants a number, a boolean or null: Snakemake parses a nested value such as
`base={lr: 0.2}` with YAML's BaseLoader, which leaves every scalar a string ('0.2').

    config = parse_command_line_values(config, load_schema(schema))
"""

from __future__ import annotations

import yaml

# JSON schema's scalar types other than string, and the Python values each admits.
SCALAR_TYPES = {
    "number": lambda value: isinstance(value, int | float) and not isinstance(value, bool),
    "integer": lambda value: isinstance(value, int) and not isinstance(value, bool),
    "boolean": lambda value: isinstance(value, bool),
    "null": lambda value: value is None,
}


def parse_command_line_values(config: dict, schema: dict) -> dict:
    """A copy of `config` whose strings are YAML-parsed where the schema wants a scalar that is
    not a string; every other value as it was. Ablation values and named runs are read by the
    schema of `base`, whose keys they set."""
    base = schema["properties"]["base"]
    parsed = {}
    for key, value in config.items():
        if key == "ablations" and isinstance(value, dict):
            parsed[key] = {
                factor: _parsed(values, {"items": base["properties"].get(factor, {})}, schema)
                for factor, values in value.items()
            }
        elif key == "runs" and isinstance(value, dict):
            parsed[key] = {name: _parsed(run, base, schema) for name, run in value.items()}
        else:
            parsed[key] = _parsed(value, schema["properties"].get(key, {}), schema)
    return parsed


def _resolved(node: dict, schema: dict) -> dict:
    if "$ref" in node:
        return {**schema["$defs"][node["$ref"].split("/")[-1]], **node}
    return node


def _forms(node: dict, schema: dict) -> list[dict]:
    """The subschema and each form of its anyOf/oneOf."""
    node = _resolved(node, schema)
    forms = [node]
    for branch in node.get("anyOf", []) + node.get("oneOf", []):
        forms += _forms(branch, schema)
    return forms


def _parsed(value, node: dict, schema: dict):
    forms = _forms(node, schema)
    if isinstance(value, dict):
        children = {}
        for key, item in value.items():
            child = next(
                (f["properties"][key] for f in forms if key in f.get("properties", {})), None
            )
            if child is None:
                extra = next(
                    (
                        f["additionalProperties"]
                        for f in forms
                        if isinstance(f.get("additionalProperties"), dict)
                    ),
                    {},
                )
                child = extra
            children[key] = _parsed(item, child, schema)
        return children
    if isinstance(value, list):
        items = next((f["items"] for f in forms if isinstance(f.get("items"), dict)), {})
        return [_parsed(item, items, schema) for item in value]
    if not isinstance(value, str):
        return value
    strings = [form for form in forms if "string" in _types(form)]
    if any(value in form.get("enum", [value]) for form in strings):
        return value  # a string the schema takes as it is
    wanted = {kind for form in forms for kind in _types(form)}
    try:
        scalar = yaml.safe_load(value)
    except yaml.YAMLError:
        return value
    if isinstance(scalar, str) and "number" in wanted:  # YAML 1.1 reads 1e-3 as a string
        try:
            scalar = float(value)
        except ValueError:
            return value
    if any(SCALAR_TYPES[kind](scalar) for kind in wanted & SCALAR_TYPES.keys()):
        return scalar
    return value


def _child(forms: list[dict], key: str) -> dict:
    """The schema of a mapping's `key`: its own property, else what any other key takes."""
    for form in forms:
        if key in form.get("properties", {}):
            return form["properties"][key]
    extra = (form.get("additionalProperties") for form in forms)
    return next((node for node in extra if isinstance(node, dict)), {})


def _types(form: dict) -> list[str]:
    kinds = form.get("type", [])
    return [kinds] if isinstance(kinds, str) else list(kinds)
