"""The trajectory file (DESIGN section 4): one writer, one reader, and the flat parameter layout.

with TrajectoryReader("results/runs/base/trajectory.h5") as traj:
    w_star = traj.weights(-1)          # float32 [P], checksum-verified
    traj.checkpoint_steps              # [K] which step each checkpoint row holds
"""

from __future__ import annotations

import datetime
import json
import os
from pathlib import Path

import h5py
import numpy as np
import torch
from torch import nn

FORMAT = "nowrongturns-trajectory"
FORMAT_VERSION = 1
STEP_COLUMNS = {
    "step": np.int64,
    "epoch": np.int64,
    "loss": np.float32,
    "lr": np.float64,
    "grad_norm": np.float32,
    "update_norm": np.float32,
}


class TrajectoryError(RuntimeError):
    """A trajectory file that cannot be used; the message names the file (and checkpoint)."""


def partial_path(path: str | Path) -> Path:
    """Where a trajectory lives until it is complete, so a killed job never looks finished."""
    path = Path(path)
    return path.with_name(path.name + ".partial")


# --- the flat layout of w (parameters) and of the buffers ------------------------------------


def flat_parameters(model: nn.Module) -> torch.Tensor:
    """w: every trainable parameter, flattened in `model.parameters()` order."""
    return torch.cat([p.detach().reshape(-1) for p in model.parameters()])


def flat_buffers(model: nn.Module) -> torch.Tensor:
    buffers = [b.detach().reshape(-1).float() for b in model.buffers()]
    return torch.cat(buffers) if buffers else torch.zeros(0)


def load_flat(model: nn.Module, weights, buffers) -> None:
    """Put a flat weight vector (and buffer vector) back into the model, in place."""
    weights = torch.as_tensor(weights)
    buffers = torch.as_tensor(buffers)
    with torch.no_grad():
        offset = 0
        for param in model.parameters():
            param.copy_(weights[offset : offset + param.numel()].view_as(param))
            offset += param.numel()
        offset = 0
        for buffer in model.buffers():
            buffer.copy_(buffers[offset : offset + buffer.numel()].view_as(buffer))
            offset += buffer.numel()


def _write_spec(group: h5py.Group, named: list[tuple[str, torch.Tensor]]) -> None:
    sizes = [t.numel() for _, t in named]
    group.create_dataset("names", data=[name for name, _ in named], dtype=h5py.string_dtype())
    shapes = group.create_dataset("shapes", (len(named),), dtype=h5py.vlen_dtype(np.int64))
    for row, (_, tensor) in enumerate(named):
        shapes[row] = np.array(tensor.shape, dtype=np.int64)
    group["offsets"] = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)


# --- writer ------------------------------------------------------------------------------------


class TrajectoryWriter:
    """Writes one run's trajectory under `<path>.partial`; `finish()` renames it to `path`."""

    def __init__(
        self,
        path,
        run_config: dict,
        model: nn.Module,
        optimizer_size: int,
        rng_sizes: dict[str, int],
        batch_size: int,
        device: str,
    ):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.file = h5py.File(partial_path(self.path), "w")
        param_count = sum(p.numel() for p in model.parameters())
        self.file.attrs.update(
            format=FORMAT,
            format_version=FORMAT_VERSION,
            config=json.dumps(run_config, sort_keys=True),
            status="running",
            param_count=param_count,
            torch_version=str(torch.__version__),  # a str subclass h5py cannot store
            device=device,
            created=datetime.datetime.now(datetime.UTC).isoformat(),
        )
        _write_spec(self.file.create_group("params"), list(model.named_parameters()))
        _write_spec(self.file.create_group("buffers"), list(model.named_buffers()))

        steps = self.file.create_group("steps")
        for name, dtype in STEP_COLUMNS.items():
            steps.create_dataset(name, (0,), dtype=dtype, maxshape=(None,), chunks=(4096,))
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
        start = dataset.shape[0]
        dataset.resize(start + len(rows), axis=0)
        dataset[start:] = rows

    def append_steps(self, columns: dict[str, np.ndarray]) -> None:
        """Append a block of /steps rows: every STEP_COLUMNS entry plus batch_indices."""
        for name in [*STEP_COLUMNS, "batch_indices"]:
            self._append(self.file["steps"][name], np.asarray(columns[name]))

    def append_checkpoint(
        self, step: int, weights, buffers, optimizer_state, rng_states: dict[str, np.ndarray]
    ) -> None:
        checkpoints = self.file["checkpoints"]
        self._append(checkpoints["step"], np.array([step]))
        for name, row in [
            ("weights", weights),
            ("buffers", buffers),
            ("optimizer", optimizer_state),
        ]:
            self._append(checkpoints[name], np.asarray(row, dtype=np.float32)[None, :])
        for name, row in rng_states.items():
            self._append(checkpoints["rng"][name], np.asarray(row, dtype=np.uint8)[None, :])

    def finish(self, status: str = "complete", **attrs) -> Path:
        self.file.attrs.update(status=status, **attrs)
        self.file.close()
        os.replace(partial_path(self.path), self.path)
        return self.path

    def abandon(self) -> None:
        """Close without renaming: the partial file stays for inspection (or a later resume)."""
        if self.file.id.valid:
            self.file.close()


# --- reader ------------------------------------------------------------------------------------


class TrajectoryReader:
    """Read-only access to a complete trajectory; each checkpoint row is read on demand."""

    def __init__(self, path, require_complete: bool = True):
        self.path = Path(path)
        try:
            self.file = h5py.File(self.path, "r")
        except OSError as error:
            raise TrajectoryError(f"{self.path}: cannot open as HDF5 ({error})") from error
        attrs = self.file.attrs
        if attrs.get("format") != FORMAT or attrs.get("format_version") != FORMAT_VERSION:
            raise TrajectoryError(
                f"{self.path}: not a {FORMAT} file of version {FORMAT_VERSION} "
                f"(format={attrs.get('format')!r}, format_version={attrs.get('format_version')!r})"
            )
        if require_complete and attrs["status"] != "complete":
            raise TrajectoryError(f"{self.path}: status is {attrs['status']!r}, not 'complete'")
        self.config = json.loads(attrs["config"])
        self.param_count = int(attrs["param_count"])
        self.checkpoint_steps = self.file["checkpoints/step"][:]
        self.total_steps = int(self.checkpoint_steps[-1])

    def __enter__(self) -> TrajectoryReader:
        return self

    def __exit__(self, *exc) -> None:
        self.file.close()

    def _row(self, name: str, index: int) -> np.ndarray:
        try:
            return self.file["checkpoints"][name][index]
        except OSError as error:  # fletcher32 mismatch, truncated file
            step = self.checkpoint_steps[index]
            raise TrajectoryError(
                f"{self.path}: checkpoint {index} (step {step}) /checkpoints/{name} "
                f"is unreadable or corrupted ({error})"
            ) from error

    def weights(self, index: int) -> np.ndarray:
        return self._row("weights", index)

    def buffers(self, index: int) -> np.ndarray:
        return self._row("buffers", index)

    def steps(self, column: str) -> np.ndarray:
        return self.file["steps"][column][:]

    def batch_indices(self, step: int) -> np.ndarray:
        return self.file["steps/batch_indices"][step]
