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
    FORMAT,
    READABLE_VERSIONS,
    VERSION_1_ATTRIBUTES,
    VERSION_1_DEFAULTS,
    TrajectoryError,
)


def stored_config(attrs) -> dict:
    """The run config of a trajectory's root attributes, every key filled."""
    config = json.loads(attrs["config"])
    if attrs.get("format_version") == 1:
        config = {**VERSION_1_DEFAULTS, **config}
    return config


def read_config(path) -> dict:
    """The run config a trajectory holds, from its attributes alone: no dataset is read."""
    try:
        with h5py.File(path, "r") as file:
            if file.attrs.get("format") != FORMAT:
                raise TrajectoryError(f"{path}: not a {FORMAT} file")
            return stored_config(file.attrs)
    except OSError as error:
        raise TrajectoryError(f"{path}: cannot open as HDF5 ({error})") from error


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
        self.config = stored_config(attrs)
        self.world_size = int(attrs.get("world_size", VERSION_1_ATTRIBUTES["world_size"]))
        self.precision = str(attrs.get("precision", VERSION_1_ATTRIBUTES["precision"]))
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

    def layout(self, group: str) -> list[tuple[str, tuple[int, ...]]]:
        """(name, shape) of each tensor of `group` ("params" or "buffers"), in the order the
        flat vectors of a checkpoint hold them."""
        names = self.file[group]["names"].asstr()[:]
        return [(name, tuple(shape)) for name, shape in zip(names, self.file[group]["shapes"])]

    def weights(self, index: int) -> np.ndarray:
        return self._row("weights", index)

    def buffers(self, index: int) -> np.ndarray:
        return self._row("buffers", index)

    def optimizer_state(self, index: int) -> np.ndarray:
        return self._row("optimizer", index)

    def rng_states(self, index: int) -> dict[str, np.ndarray]:
        return {name: self._row(f"rng/{name}", index) for name in self.file["checkpoints/rng"]}

    def steps(self, column: str) -> np.ndarray:
        if column == "clip_factor" and column not in self.file["steps"]:  # version 1
            return np.ones(len(self.file["steps/step"]), dtype=np.float32)
        return self.file["steps"][column][:]

    def batch_indices(self, steps) -> np.ndarray:
        """The minibatch indices of one step [B], or of a slice or increasing array of steps
        [n, B]."""
        return self.file["steps/batch_indices"][steps]
