"""The trajectory's one writer: the train stage's file, under a temporary name until complete.

    writer = TrajectoryWriter(path, run, model, optimizer_size, rng_sizes, batch_size, device, ...)
    writer.append_steps(columns); writer.append_checkpoint(step, **state)
    writer.finish()        # renames trajectory.h5.partial to trajectory.h5

A killed job leaves the partial file; the next job reopens it (`resume_state`) from its last
whole checkpoint. A full disk stops the run with a DiskFullError before a write it has no room
for, and a write that failed half way is cut on resume (disk.py).
"""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import shutil
import sys
from pathlib import Path

import h5py
import numpy as np
import torch
from torch import nn

from nowrongturns.trajectory.disk import (
    METADATA_MARGIN,
    chunk_geometry,
    datasets,
    is_disk_full,
    new_chunk_bytes,
    whole_checkpoints,
)
from nowrongturns.trajectory.format import (
    ALL_STEP_COLUMNS,
    FORMAT,
    FORMAT_VERSION,
    ORIGINS,
    STEP_COLUMNS,
    DiskFullError,
    partial_path,
)
from nowrongturns.trajectory.state import flat_buffers


def _write_spec(group: h5py.Group, named: list[tuple[str, torch.Tensor]]) -> None:
    sizes = [t.numel() for _, t in named]
    group.create_dataset("names", data=[name for name, _ in named], dtype=h5py.string_dtype())
    shapes = group.create_dataset("shapes", (len(named),), dtype=h5py.vlen_dtype(np.int64))
    for row, (_, tensor) in enumerate(named):
        shapes[row] = np.array(tensor.shape, dtype=np.int64)
    group["offsets"] = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)


class TrajectoryWriter:
    """Writes one run's trajectory under `<path>.partial`; `finish()` renames it to `path`.

    If a partial file of the same run is there (a killed job), it is reopened and cut back to its
    last whole checkpoint: `resume_state()` returns that checkpoint, and training goes on from it.
    `origin` says what made it (format.ORIGINS); `step_columns` which of ALL_STEP_COLUMNS it
    holds (all, as the train stage writes; `batch_size` matters only with batch_indices).
    """

    def __init__(
        self,
        path,
        run_config: dict,
        model: nn.Module,
        optimizer_size: int,
        rng_sizes: dict[str, int],
        batch_size: int,
        device: str,
        data_provenance: dict | None = None,
        world_size: int = 1,
        precision: str = "fp32",
        origin: str = "trained",
        step_columns: tuple[str, ...] = ALL_STEP_COLUMNS,
    ):
        if origin not in ORIGINS or not set(step_columns) <= set(ALL_STEP_COLUMNS):
            raise ValueError(f"origin {origin!r} or step columns {step_columns} unknown")
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        identity = {
            "config": json.dumps(run_config, sort_keys=True),
            "torch_version": str(torch.__version__),  # a str subclass h5py cannot store
            "device": device,
            "data_provenance": json.dumps(data_provenance or {}, sort_keys=True),
            "world_size": world_size,
            "precision": precision,
            "origin": origin,
        }
        # In ALL_STEP_COLUMNS' order, whatever order they came in.
        self.step_columns = [name for name in ALL_STEP_COLUMNS if name in step_columns]
        self.torn = False  # a write failed half way (a full disk)
        self.file = self._reopen(identity)
        if self.file is None:
            self._create(identity, model, optimizer_size, rng_sizes, batch_size)
        # Looked up once, with their chunk sizes: h5py's lookups by name and property cost more
        # than a small append.
        self.datasets = {dataset.name[1:]: dataset for dataset in datasets(self.file)}
        self.chunk_geometry = {
            name: chunk_geometry(dataset)
            for name, dataset in self.datasets.items()
            if name.startswith(("steps/", "checkpoints/"))  # the grown ones
        }
        self.rng_names = list(self.file["checkpoints/rng"])
        self.filename = self.file.filename

    def _create(self, identity, model, optimizer_size, rng_sizes, batch_size) -> None:
        self.file = h5py.File(partial_path(self.path), "w")
        param_count = sum(p.numel() for p in model.parameters())
        self.file.attrs.update(
            format=FORMAT,
            format_version=FORMAT_VERSION,
            status="running",
            param_count=param_count,
            created=datetime.datetime.now(datetime.UTC).isoformat(),
            step_columns=self.step_columns,
            **identity,
        )
        _write_spec(self.file.create_group("params"), list(model.named_parameters()))
        _write_spec(self.file.create_group("buffers"), list(model.named_buffers()))

        steps = self.file.create_group("steps")
        for name, dtype in STEP_COLUMNS.items():
            if name in self.step_columns:
                steps.create_dataset(name, (0,), dtype=dtype, maxshape=(None,), chunks=(4096,))
        if "batch_indices" in self.step_columns:
            steps.create_dataset(
                "batch_indices",
                (0, batch_size),
                dtype=np.int64,
                maxshape=(None, batch_size),
                chunks=(max(1, 65536 // batch_size), batch_size),
            )

        checkpoints = self.file.create_group("checkpoints")
        checkpoints.create_dataset("step", (0,), dtype=np.int64, maxshape=(None,), chunks=(1024,))
        self._rows(checkpoints, "weights", param_count, np.float32)
        self._rows(checkpoints, "buffers", flat_buffers(model).numel(), np.float32)
        self._rows(checkpoints, "optimizer", optimizer_size, np.float32)
        rng = checkpoints.create_group("rng")
        for name, size in rng_sizes.items():
            self._rows(rng, name, size, np.uint8)

    def _reopen(self, identity: dict) -> h5py.File | None:
        """The partial file of this same run, cut back to its last whole checkpoint, or None."""
        partial = partial_path(self.path)
        if not partial.exists():
            return None
        try:
            file = h5py.File(partial, "r+")
            same_run = all(file.attrs.get(key) == value for key, value in identity.items())
            listed, checkpoint_count = len(file["checkpoints/step"]), whole_checkpoints(file)
        except (OSError, KeyError) as error:
            print(f"{partial}: unreadable ({error}); training from the start", file=sys.stderr)
            partial.unlink()
            return None
        if not same_run or checkpoint_count == 0:
            file.close()
            print(
                f"{partial}: another run or no checkpoint; training from the start", file=sys.stderr
            )
            return None
        if checkpoint_count < listed:
            print(
                f"{partial}: the last {listed - checkpoint_count} checkpoint(s) are torn "
                "(a write that failed half way); cut",
                file=sys.stderr,
            )
        for dataset in datasets(file["checkpoints"]):
            dataset.resize(checkpoint_count, axis=0)
        last_step = int(file["checkpoints/step"][-1])
        for dataset in datasets(file["steps"]):
            dataset.resize(last_step, axis=0)
        print(f"{partial}: resuming from the checkpoint at step {last_step}", file=sys.stderr)
        return file

    def resume_state(self) -> dict | None:
        """The last checkpoint of a reopened partial file (step, weights, buffers, optimizer,
        rng), or None when training starts from scratch."""
        checkpoints = self.file["checkpoints"]
        if len(checkpoints["step"]) == 0:
            return None
        return {
            "step": int(checkpoints["step"][-1]),
            **{name: checkpoints[name][-1] for name in ("weights", "buffers", "optimizer")},
            "rng": {name: dataset[-1] for name, dataset in checkpoints["rng"].items()},
        }

    @staticmethod
    def _rows(group: h5py.Group, name: str, width: int, dtype) -> None:
        """A [K, width] dataset grown one checksummed row (one chunk) per checkpoint."""
        group.create_dataset(
            name,
            (0, width),
            dtype=dtype,
            chunks=(1, max(width, 1)),
            fletcher32=True,
            maxshape=(None, width if width else None),  # HDF5 needs room for a 1-wide chunk
        )

    @staticmethod
    def _append(dataset: h5py.Dataset, rows: np.ndarray) -> None:
        """Grow `dataset` by `rows` along axis 0 and write them, through h5py's low-level calls:
        `resize` and slicing take twice as long, and a checkpoint appends to 14 datasets."""
        rows = np.ascontiguousarray(rows)
        dataset_id = dataset.id
        start = dataset_id.shape[0]
        dataset_id.set_extent((start + len(rows), *dataset_id.shape[1:]))
        if rows.size:
            file_space = dataset_id.get_space()
            file_space.select_hyperslab((start,) + (0,) * (rows.ndim - 1), rows.shape)
            dataset_id.write(h5py.h5s.create_simple(rows.shape), file_space, rows)

    def check_space(self, steps: int, checkpoint: int | None, checkpoints: int = 1) -> None:
        """Refuse, before writing any of it, an append of `steps` step rows (and `checkpoints`
        checkpoints, the last at step `checkpoint`) that the disk has no room for: a write that
        fails half way can tear the file, one never begun leaves it as its last flush did,
        resumable."""
        # Every /steps column holds as many rows as the others, every checkpoint dataset as
        # many as /checkpoints/step (they are appended together): two lengths to look up.
        rows = {f"steps/{name}": steps for name in self.step_columns}
        if checkpoint is not None:
            rows.update(
                {
                    name: checkpoints
                    for name in self.chunk_geometry
                    if name.startswith("checkpoints/")
                }
            )
        step_rows = self.datasets[f"steps/{self.step_columns[0]}"].id.shape[0] if steps else 0
        checkpoint_count = self.datasets["checkpoints/step"].id.shape[0]
        needed = METADATA_MARGIN + sum(
            new_chunk_bytes(
                self.chunk_geometry[name],
                step_rows if name.startswith("steps/") else checkpoint_count,
                count,
            )
            for name, count in rows.items()
        )
        free = shutil.disk_usage(self.filename).free
        if free < needed:
            what = f"{steps} step rows"
            if checkpoint is not None:
                what += f" and the checkpoint at step {checkpoint}" + (
                    f" with the {checkpoints - 1} before it" if checkpoints > 1 else ""
                )
            raise self._disk_full(f"{what} need {needed} bytes with HDF5's own", free)

    def _disk_full(self, what: str, free: int | None = None) -> DiskFullError:
        """The error of a full disk. `free` given: found before writing, so the file is as its
        last flush left it; else a write failed half way, and the resume cuts what it tore."""
        steps, torn = self.file["checkpoints/step"], free is None
        if torn:
            free, again = shutil.disk_usage(self.file.filename).free, "its last whole checkpoint"
        else:
            again = f"the checkpoint at step {steps[-1]}" if len(steps) else None
        again = f"it resumes from {again}" if again else "it starts from the beginning"
        return DiskFullError(
            f"{self.file.filename}: no space left on the device: {what}, and {free} bytes are "
            f"free there. Free space and run the job again: {again}",
            torn,
        )

    def append_steps(self, columns: dict[str, np.ndarray]) -> None:
        """Append a block of /steps rows: every column the file holds (`step_columns`)."""
        for name in self.step_columns:
            self._append(self.datasets[f"steps/{name}"], np.asarray(columns[name]))

    def append_checkpoint(
        self, step: int, weights, buffers, optimizer_state, rng_states: dict[str, np.ndarray]
    ) -> None:
        """Append one checkpoint and flush: a job killed after this resumes from here."""
        state = {"weights": weights, "buffers": buffers, "optimizer_state": optimizer_state}
        self.append_checkpoints([(step, {**state, "rng_states": rng_states})])

    def append_checkpoints(self, checkpoints: list[tuple[int, dict]]) -> None:
        """Append (step, state) checkpoints, state as append_checkpoint takes it, one append per
        dataset, and flush: a job killed after this resumes from the last."""
        states = [state for _, state in checkpoints]
        rows = {"weights": "weights", "buffers": "buffers", "optimizer": "optimizer_state"}
        for name, key in rows.items():
            stacked = np.stack([np.asarray(state[key], np.float32) for state in states])
            self._append(self.datasets[f"checkpoints/{name}"], stacked)
        for name in self.rng_names:
            rng = np.stack([np.asarray(state["rng_states"][name], np.uint8) for state in states])
            self._append(self.datasets[f"checkpoints/rng/{name}"], rng)
        steps = np.array([step for step, _ in checkpoints])
        self._append(self.datasets["checkpoints/step"], steps)  # last: marks them whole
        with self._disk_errors(f"the flush of the checkpoint at step {steps[-1]} failed"):
            self.file.flush()

    def finish(self, status: str = "complete", **attrs) -> Path:
        self.check_space(0, checkpoint=None)
        self.file.attrs.update(status=status, **attrs)
        with self._disk_errors("closing the finished file failed"):
            self.file.close()
        os.replace(partial_path(self.path), self.path)
        return self.path

    @contextlib.contextmanager
    def _disk_errors(self, what: str):
        """HDF5's own error for a full disk (errno 28 inside a RuntimeError) as one naming the
        file and the space."""
        try:
            yield
        except (OSError, RuntimeError) as error:
            if not is_disk_full(error):
                raise
            self.torn = True
            raise self._disk_full(what) from error

    def abandon(self) -> None:
        """Close without renaming: the partial file stays for a later resume. Not a torn one:
        HDF5 cannot close it, and each try could tear more (the resume cuts what is torn)."""
        if self.file.id.valid and not self.torn:
            self.file.close()
