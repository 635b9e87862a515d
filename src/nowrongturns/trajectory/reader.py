"""The trajectory's one reader, for every stage after training; it imports no torch, so the
stages that only read a trajectory (schedule) start in a second rather than four.

    with TrajectoryReader("results/runs/base/trajectory.h5") as traj:
        w_star = traj.weights(-1)          # float32 [P], checksum-verified
        traj.checkpoint_steps              # [K] which step each checkpoint row holds
"""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np

from nowrongturns.trajectory.format import (
    ALL_STEP_COLUMNS,
    FORMAT,
    READABLE_VERSIONS,
    VERSION_1_ATTRIBUTES,
    VERSION_1_DEFAULTS,
    TrajectoryError,
)


class TrajectoryReader:
    """Read-only access to a complete trajectory; each checkpoint row is read on demand."""

    def __init__(self, path, require_complete: bool = True):
        self.path = Path(path)
        try:
            self.file = h5py.File(self.path, "r")
        except OSError as error:
            raise TrajectoryError(f"{self.path}: cannot open as HDF5 ({error})") from error
        attrs = self.file.attrs
        self.format_version = attrs.get("format_version")
        if attrs.get("format") != FORMAT or self.format_version not in READABLE_VERSIONS:
            raise TrajectoryError(
                f"{self.path}: not a {FORMAT} file of a version this package reads "
                f"{READABLE_VERSIONS} (format={attrs.get('format')!r}, "
                f"format_version={self.format_version!r})"
            )
        if require_complete and attrs["status"] == "diverged":
            raise TrajectoryError(
                f"{self.path}: training diverged at step {attrs['diverged_step']} "
                "(non-finite loss); there is no path to measure"
            )
        if require_complete and attrs["status"] != "complete":
            raise TrajectoryError(f"{self.path}: status is {attrs['status']!r}, not 'complete'")
        self.config = json.loads(attrs["config"])
        if self.format_version == 1:
            self.config = {**VERSION_1_DEFAULTS, **self.config}
        self.world_size = int(attrs.get("world_size", VERSION_1_ATTRIBUTES["world_size"]))
        self.precision = str(attrs.get("precision", VERSION_1_ATTRIBUTES["precision"]))
        # The shards of every minibatch gradient: batch_shards replicas in each DDP process (a
        # trajectory written before the key existed: one a process, as it was trained).
        self.shards = self.world_size * int(self.config.get("batch_shards", 1))
        # Version 3 says what made the file and which per-step columns it holds; earlier
        # versions were all trained by the train stage, with every column (clip_factor read as
        # 1 in version 1).
        self.origin = str(attrs.get("origin", "trained"))
        self.step_columns = tuple(str(c) for c in attrs.get("step_columns", ALL_STEP_COLUMNS))
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

    def optimizer_state(self, index: int) -> np.ndarray:
        return self._row("optimizer", index)

    def rng_states(self, index: int) -> dict[str, np.ndarray]:
        return {name: self._row(f"rng/{name}", index) for name in self.file["checkpoints/rng"]}

    @property
    def optimizer_recorded(self) -> bool:
        """Whether the checkpoints hold the optimizer's state (imported ones do not, nor do
        recorded ones without a torch.optim optimizer); plain SGD has none to hold."""
        return self.origin == "trained" or self.file["checkpoints/optimizer"].shape[1] > 0

    def _require(self, column: str) -> None:
        if column not in self.step_columns:
            raise TrajectoryError(
                f"{self.path}: no per-step column {column!r}: this {self.origin} trajectory "
                f"holds {list(self.step_columns) or 'none'}"
            )

    def steps(self, column: str) -> np.ndarray:
        """One per-step column, [T]; one the file does not hold (a recorded or imported
        trajectory's) reads as NaN: its values are unknown."""
        if column not in self.step_columns:
            return np.full(self.total_steps, np.nan)
        if column == "clip_factor" and column not in self.file["steps"]:  # version 1
            return np.ones(len(self.file["steps/step"]), dtype=np.float32)
        return self.file["steps"][column][:]

    def batch_indices(self, steps) -> np.ndarray:
        """The minibatch indices of one step [B], or of a slice or increasing array of steps
        [n, B]."""
        self._require("batch_indices")
        return self.file["steps/batch_indices"][steps]
