"""The fuzz suite's machinery: mutations of a file (bytes, HDF5 structure, tables, JSON), as
hypothesis strategies that print what they did, and a worker process that runs a reader on each
mutated input, so that a hang is ended at a stated timeout and a crash (a segfault) is seen rather
than taking the test session with it.

Outcomes: `read` (the reader went through), `refused` (an error the `nwt` commands print as one
line, naming the file), and the failures `traceback` (any other error, or one not naming the
file), `hang`, `crash`, `final-name` (a refused input left an output under its final name).
"""

from __future__ import annotations

import json
import math
import multiprocessing
import shutil
import traceback
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
from hypothesis import strategies as st

FAILURES = ("traceback", "hang", "crash", "final-name")


# --- mutations: each a small value that says what it does and applies itself to a file --------


@dataclass(frozen=True)
class ByteEdit:
    """`flip` xors bytes, `zero` and `random` overwrite them, `insert`/`delete` shift the rest,
    `truncate` cuts the file, at a fraction of its length."""

    kind: str
    at: float
    size: int
    data: bytes

    def apply(self, path: Path) -> None:
        content = bytearray(path.read_bytes())
        start = min(int(self.at * len(content)), max(len(content) - 1, 0))
        end = min(start + self.size, len(content))
        if self.kind == "flip":
            for index in range(start, end):
                content[index] ^= self.data[index % len(self.data)] or 0xFF
        elif self.kind == "zero":
            content[start:end] = bytes(end - start)
        elif self.kind == "random":
            content[start:end] = (self.data * self.size)[: end - start]
        elif self.kind == "insert":
            content[start:start] = self.data
        elif self.kind == "delete":
            del content[start:end]
        else:  # truncate
            del content[start:]
        path.write_bytes(bytes(content))


def byte_edits(max_edits: int = 3):
    edit = st.builds(
        ByteEdit,
        st.sampled_from(["flip", "zero", "random", "insert", "delete", "truncate"]),
        st.floats(0, 1),
        st.integers(1, 64),
        st.binary(min_size=1, max_size=16),
    )
    return st.lists(edit, min_size=1, max_size=max_edits).map(Edits)


@dataclass(frozen=True)
class Edits:
    """Several mutations: those of the structure first, then those of the bytes. A structural one
    that an earlier one left nothing to apply to (a dataset deleted, a file no longer HDF5) is
    left out."""

    edits: list

    def apply(self, path: Path) -> None:
        for edit in sorted(self.edits, key=lambda edit: isinstance(edit, ByteEdit | Edits)):
            try:
                edit.apply(path)
            except Exception:  # h5py's and pandas' errors for what is no longer there vary
                if isinstance(edit, ByteEdit | Edits):
                    raise


# Values an attribute, a config key or a JSON field is set to: the edges a reader must see.
ODD_VALUES = [
    -1,
    0,
    1,
    3,
    99,
    10**12,
    2**63 - 1,
    1.5,
    math.nan,
    math.inf,
    "",
    "x",
    "complete",
    "running",
    None,
    [],
    [1],
    {},
    True,
]


@dataclass(frozen=True)
class Attribute:
    """An HDF5 root attribute deleted (value `delete`) or set."""

    name: str
    value: object

    def apply(self, path: Path) -> None:
        with h5py.File(path, "r+") as file:
            if self.value == "delete":
                file.attrs.pop(self.name, None)
            else:
                file.attrs[self.name] = _storable(self.value)


def _storable(value):
    if value is None or isinstance(value, list | dict):
        return json.dumps(value)
    return value


@dataclass(frozen=True)
class ConfigKey:
    """The trajectory's `config` attribute (JSON) with one key deleted or set."""

    key: str
    value: object

    def apply(self, path: Path) -> None:
        with h5py.File(path, "r+") as file:
            config = json.loads(file.attrs["config"])
            if self.value == "delete":
                config.pop(self.key, None)
            else:
                config[self.key] = self.value
            file.attrs["config"] = json.dumps(config)


@dataclass(frozen=True)
class Dataset:
    """An HDF5 dataset deleted, resized (rows kept up to `rows`, or declared `rows` without
    writing them), retyped, or declared `factor` times wider than it is."""

    name: str
    change: str
    amount: int

    def apply(self, path: Path) -> None:
        with h5py.File(path, "r+") as file:
            if self.name not in file:
                return
            item = file[self.name]
            if self.change == "delete" or not isinstance(item, h5py.Dataset):
                del file[self.name]
                return
            data, parent, leaf = item[()], item.parent, self.name.rsplit("/", 1)[-1]
            del file[self.name]
            if self.change == "retype":
                dtype = [np.float16, np.int8, np.uint64, np.float64, h5py.string_dtype()]
                dtype = dtype[self.amount % 5]
                if dtype is h5py.string_dtype() or data.dtype.kind == "O":
                    parent.create_dataset(
                        leaf, data=np.array(data, dtype=str).astype(object), dtype=dtype
                    )
                else:
                    parent.create_dataset(leaf, data=data.astype(dtype))
                return
            shape = list(data.shape) or [1]
            if self.change == "rows":
                shape[0] = self.amount
            else:  # wider: the last dimension claimed 10^amount times larger
                shape[-1] = max(shape[-1], 1) * 10**self.amount
            chunks = tuple(min(side, 1 << 16) or 1 for side in shape)
            created = parent.create_dataset(
                leaf, tuple(shape), dtype=data.dtype, chunks=chunks, maxshape=(None,) * len(shape)
            )
            kept = min(len(data) if data.ndim else 0, shape[0])
            if data.ndim and kept and self.change == "rows":
                created[:kept] = data[:kept]


@dataclass(frozen=True)
class ChunkBytes:
    """Bytes flipped inside the stored chunk of `dataset` at row `row`: a checksummed chunk
    (/checkpoints/*) or one no checksum covers (/steps/*)."""

    dataset: str
    row: int
    offset: int

    def apply(self, path: Path) -> None:
        with h5py.File(path, "r") as file:
            item = file[self.dataset]
            if not item.shape or item.shape[0] == 0:
                return
            coordinate = (self.row % item.shape[0],) + (0,) * (item.ndim - 1)
            coordinate = tuple(c - c % k for c, k in zip(coordinate, item.chunks, strict=True))
            info = item.id.get_chunk_info_by_coord(coordinate)
        if info.byte_offset is None or info.size == 0:
            return
        content = bytearray(path.read_bytes())
        at = info.byte_offset + self.offset % info.size
        content[at] ^= 0xFF
        path.write_bytes(bytes(content))


@dataclass(frozen=True)
class Column:
    """A Parquet table with a column dropped, retyped (to str), or set to `value` in every row
    (`rows` = all) or the first; `rows` = `empty` keeps no row, `half` every other."""

    name: str
    change: str
    value: object

    def apply(self, path: Path) -> None:
        table = pd.read_parquet(path)
        if self.change == "empty":
            table = table.iloc[:0]
        elif self.change == "half":
            table = table.iloc[::2]
        elif self.name in table:
            if self.change == "drop":
                table = table.drop(columns=self.name)
            elif self.change == "retype":
                table[self.name] = table[self.name].astype(str)
            else:
                rows = slice(None) if self.change == "all" else slice(0, 1)
                column = table[self.name].astype(object)
                column.iloc[rows] = self.value
                table[self.name] = _uniform(column)
        table.to_parquet(path)


def _uniform(column: pd.Series) -> pd.Series:
    """A column Parquet can store: numeric where every value is, else strings."""
    try:
        return pd.to_numeric(column)
    except (ValueError, TypeError):
        return column.astype(str)


@dataclass(frozen=True)
class JsonField:
    """A JSON document with one top-level field deleted or set."""

    key: str
    value: object

    def apply(self, path: Path) -> None:
        document = json.loads(path.read_text())
        if self.value == "delete":
            document.pop(self.key, None)
        else:
            document[self.key] = self.value
        path.write_text(json.dumps(document))


def hdf5_mutations(file: Path):
    """Every kind of change to a trajectory file, and byte edits, one to three at once."""
    with h5py.File(file) as handle:
        attributes = sorted(handle.attrs)
        config_keys = sorted(json.loads(handle.attrs["config"]))
        datasets = []
        handle.visititems(
            lambda name, item: datasets.append(name) if isinstance(item, h5py.Dataset) else None
        )
        groups = ["params", "steps", "checkpoints", "checkpoints/rng"]
    values = st.sampled_from(ODD_VALUES)
    one = st.one_of(
        st.builds(Attribute, st.sampled_from(attributes), st.just("delete") | values),
        st.builds(Attribute, st.just("format_version"), st.sampled_from([0, 3, 99, -1, "2"])),
        st.builds(ConfigKey, st.sampled_from(config_keys), st.just("delete") | values),
        st.builds(
            Dataset,
            st.sampled_from(datasets + groups),
            st.sampled_from(["delete", "rows", "retype", "wider"]),
            st.integers(0, 12),
        ),
        st.builds(
            ChunkBytes,
            st.sampled_from(
                [name for name in datasets if name.split("/")[0] in ("checkpoints", "steps")]
            ),
            st.integers(0, 100),
            st.integers(0, 10**6),
        ),
        byte_edits(1),
    )
    return st.lists(one, min_size=1, max_size=3).map(Edits)


def parquet_mutations(file: Path):
    columns = list(pd.read_parquet(file).columns)
    values = st.sampled_from([math.nan, math.inf, -math.inf, -1, 0, 10**15, "x", ""])
    one = st.one_of(
        st.builds(Column, st.sampled_from(columns), st.sampled_from(["drop", "retype"]), st.none()),
        st.builds(Column, st.sampled_from(columns), st.sampled_from(["all", "first"]), values),
        st.builds(Column, st.just(""), st.sampled_from(["empty", "half"]), st.none()),
        byte_edits(2),
    )
    return st.lists(one, min_size=1, max_size=3).map(Edits)


def json_mutations(file: Path):
    keys = list(json.loads(file.read_text()))
    values = st.sampled_from(
        ODD_VALUES + [[0.0, 1.0], [1.0, 0.0], [0.5], [-1.0, 2.0], ["a", "b"], list(range(10**4))]
    )
    one = st.one_of(
        st.builds(JsonField, st.sampled_from(keys), st.just("delete") | values),
        byte_edits(2),
    )
    return st.lists(one, min_size=1, max_size=3).map(Edits)


# --- the worker: one process that runs readers until one hangs or crashes it -------------------


def _serve(connection) -> None:
    from helpers.fuzz_readers import READERS  # the registry, imported in the worker

    while True:
        job = connection.recv()
        if job is None:
            return
        name, path, out = job
        try:
            READERS[name].read(Path(path), Path(out))
        except SystemExit as error:  # an `nwt` command: its one-line error, or success
            if error.code in (None, 0):
                connection.send(("read", ""))
            else:
                connection.send(("refused", str(error.code)))
        except Exception as error:
            from nowrongturns.cli import _bad_input

            if _bad_input(error):
                connection.send(("refused", str(error)))
            else:
                connection.send(("traceback", traceback.format_exc(limit=6)))
        else:
            connection.send(("read", ""))


class Worker:
    """A process running readers on request; restarted after a hang (killed at `timeout`
    seconds) or a crash."""

    def __init__(self, timeout: float):
        self.timeout, self.process = timeout, None

    def _start(self) -> None:
        context = multiprocessing.get_context("spawn")
        self.connection, child = context.Pipe()
        self.process = context.Process(target=_serve, args=(child,), daemon=True)
        self.process.start()

    def run(self, name: str, path: Path, out: Path) -> tuple[str, str]:
        if self.process is None or not self.process.is_alive():
            self._start()
        self.connection.send((name, str(path), str(out)))
        if not self.connection.poll(self.timeout):
            self.stop(kill=True)
            return "hang", f"no answer in {self.timeout} s"
        try:
            return self.connection.recv()
        except EOFError:
            code = self.process.exitcode
            self.process = None
            return "crash", f"the worker died (exit code {code})"

    def stop(self, kill: bool = False) -> None:
        if self.process is None:
            return
        if kill:
            self.process.kill()
        else:
            self.connection.send(None)
        self.process.join(30)
        self.process = None


def outcome(worker: Worker, name: str, path: Path, out: Path) -> tuple[str, str]:
    """Run reader `name` on `path`; a refusal must name the file and leave no output under a
    final name (a temporary `.NAME.tmp*` may stay)."""
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    kind, detail = worker.run(name, path, out)
    if kind == "refused":
        if str(path) not in detail and path.name not in detail:
            return "traceback", f"the error does not name {path}: {detail}"
        final = [p.name for p in out.rglob("*") if p.is_file() and not p.name.startswith(".")]
        if final:
            return "final-name", f"{final} left after: {detail}"
    return kind, detail
