"""The workflow's tables and JSON documents read back by a later stage, each checked before it is
used: a file that is not Parquet (or JSON), or lacks a column, or holds a column of the wrong kind,
stops the stage with a TableError naming the file and the column, never a KeyError deep inside.

    table = read_parquet("results/runs/base/geometry.parquet", "geometry", GEOMETRY_COLUMNS)
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

# The geometry table's columns (measure/stage.py writes them) and the kind of each.
GEOMETRY_COLUMNS = {
    "run": "string",
    "step": "integer",
    "epoch": "number",  # NaN where a recorded or imported trajectory holds no epochs
    "progress": "number",
    "source": "string",
    "sample": "integer",
    "loss": "number",
    "dist": "number",
    "grad_norm": "number",
    "dot": "number",
    "rsi": "number",
    "eb": "number",
    "gamma": "number",
    "z": "number",
    "grad_norm_wd": "number",
    "dot_wd": "number",
    "rsi_wd": "number",
    "eb_wd": "number",
    "gamma_wd": "number",
    "gamma_origin": "number",
    "gamma_other": "number",
}
# numpy dtype kinds of each kind of column. A number column holds finite values or NaN (what
# does not apply), never an infinity.
KINDS = {"integer": "iu", "number": "iuf", "string": "OUT"}


class TableError(ValueError):
    """A table or document that a stage cannot use; the message names the file (and column)."""


def read_parquet(path: str | Path, kind: str, columns: dict[str, str] | None = None):
    """A Parquet table with at least `columns` (name -> integer | number | string)."""
    path = Path(path)
    try:
        table = pd.read_parquet(path)
    except FileNotFoundError:
        raise TableError(f"{path}: no such file (the {kind} table)") from None
    except Exception as error:  # pyarrow's errors for a file that is not (whole) Parquet vary
        raise TableError(f"{path}: not a readable Parquet {kind} table ({error})") from None
    check_columns(table, path, kind, columns or {})
    return table


def check_columns(table: pd.DataFrame, path: Path, kind: str, columns: dict[str, str]) -> None:
    missing = [name for name in columns if name not in table]
    if missing:
        raise TableError(f"{path}: the {kind} table has no column {', '.join(missing)}")
    for name, wanted in columns.items():
        column = table[name]
        strings = wanted == "string" and column.map(lambda value: isinstance(value, str)).all()
        if column.dtype.kind not in KINDS[wanted] or (wanted == "string" and not strings):
            raise TableError(
                f"{path}: column {name!r} of the {kind} table holds {column.dtype}, not "
                f"{wanted} values"
            )
        if wanted == "number" and np.isinf(column.to_numpy(dtype=float)).any():
            raise TableError(f"{path}: column {name!r} of the {kind} table holds an infinity")
    if table.empty:
        raise TableError(f"{path}: the {kind} table has no rows")


def read_json(path: str | Path, kind: str) -> dict:
    """A JSON document holding a mapping."""
    path = Path(path)
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise TableError(f"{path}: no such file (the {kind})") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise TableError(f"{path}: not a JSON {kind} ({error})") from None
    if not isinstance(document, dict):
        raise TableError(f"{path}: the {kind} holds {type(document).__name__}, not a mapping")
    return document
