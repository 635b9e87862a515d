"""MkDocs hook: the configuration reference (docs/config.md) generated from the workflow's JSON
schema at build time, so the page cannot drift from what Snakemake validates.

The page holds the marker CONFIG_REFERENCE where the tables go: one section per top-level key,
one row per key below it (nested keys by their dotted path), with its type, default and the
schema's `description`. `undocumented_keys` lists the keys without one (a test requires none).
"""

from __future__ import annotations

import json
from pathlib import Path

import yaml

SCHEMA = Path(__file__).resolve().parents[2] / "workflow" / "schemas" / "config.schema.yaml"
MARKER = "<!-- CONFIG_REFERENCE -->"


def load_schema(path: Path = SCHEMA) -> dict:
    return yaml.safe_load(path.read_text())


def _resolved(node: dict, schema: dict) -> dict:
    """`node` with its `$ref` (into `$defs`) merged under it, the node's own keys winning; the
    properties merged key by key (a stage's resources restate one default of the shared ones)."""
    if "$ref" not in node:
        return node
    target = schema["$defs"][node["$ref"].removeprefix("#/$defs/")]
    merged = {**target, **{key: value for key, value in node.items() if key != "$ref"}}
    properties = {name: dict(value) for name, value in target.get("properties", {}).items()}
    for name, value in node.get("properties", {}).items():
        properties[name] = {**properties.get(name, {}), **value}
    if properties:
        merged["properties"] = properties
    return merged


def keys(schema: dict) -> list[tuple[str, dict]]:
    """Every key of the config, as (dotted path, its schema with `$ref` resolved), parents first."""
    found = []

    def walk(prefix: str, node: dict) -> None:
        for name, child in node.get("properties", {}).items():
            child = _resolved(child, schema)
            path = f"{prefix}.{name}" if prefix else name
            found.append((path, child))
            walk(path, child)

    walk("", schema)
    return found


def undocumented_keys(schema: dict) -> list[str]:
    return [path for path, node in keys(schema) if not str(node.get("description", "")).strip()]


def _type(node: dict) -> str:
    if "enum" in node:
        return " \\| ".join(f"`{value}`" for value in node["enum"])
    if "anyOf" in node:  # each kind once: two patterns read "string (a pattern)" once
        return " or ".join(dict.fromkeys(_type(option) for option in node["anyOf"]))
    kinds = node.get("type", "")
    kinds = kinds if isinstance(kinds, list) else [kinds]
    shown = " or ".join(kind for kind in kinds if kind)
    if "pattern" in node and "enum" not in node:
        shown += " (a pattern)" if shown else "pattern"
    return shown or "any"


def _default(node: dict) -> str:
    if "default" not in node:
        return ""
    return f"`{json.dumps(node['default'])}`"


def _cell(text: str) -> str:
    return " ".join(str(text).split()).replace("|", "\\|")


def reference(schema: dict) -> str:
    """The Markdown of the reference: a heading per top-level key and a table of the keys below."""
    lines = []
    for section, node in schema["properties"].items():
        node = _resolved(node, schema)
        lines += [f"## `{section}`", "", _cell(node.get("description", "")), ""]
        nested = [(path, child) for path, child in keys(schema) if path.startswith(f"{section}.")]
        if not nested:
            lines += [f"Type: {_type(node)}. Default: {_default(node) or 'none'}.", ""]
            continue
        lines += ["| key | type | default | meaning |", "|---|---|---|---|"]
        for path, child in nested:
            meaning = _cell(child.get("description", ""))
            cells = (f"`{path}`", _type(child), _default(child), meaning)
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


def on_page_markdown(markdown: str, page, config, files) -> str:  # noqa: ARG001 (MkDocs' hook)
    if MARKER not in markdown:
        return markdown
    return markdown.replace(MARKER, reference(load_schema()))
