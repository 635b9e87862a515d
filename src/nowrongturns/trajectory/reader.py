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

from nowrongturns.config import ConfigError, validate_run
from nowrongturns.precision import PRECISIONS
from nowrongturns.trajectory.claims import check_claims, check_path
from nowrongturns.trajectory.format import (
    ALL_STEP_COLUMNS,
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
        check_path(self.path)
        try:
            self.file = h5py.File(self.path, "r")
        except OSError as error:
            raise TrajectoryError(f"{self.path}: cannot open as HDF5 ({error})") from error
        try:
            self._read_header(require_complete)
        except Exception as error:
            self.file.close()
            if isinstance(error, TrajectoryError):
                raise
            if isinstance(error, OSError | KeyError | TypeError | ValueError):
                # HDF5's metadata unreadable, or an attribute of no usable kind
                raise TrajectoryError(f"{self.path}: corrupted or malformed ({error})") from None
            raise

    def _read_header(self, require_complete: bool) -> None:
        """The attributes, then what the datasets claim (claims.py), before any row is read."""
        attrs = self.file.attrs
        self.format_version = attrs.get("format_version")
        if attrs.get("format") != FORMAT or self.format_version not in READABLE_VERSIONS:
            raise TrajectoryError(
                f"{self.path}: not a {FORMAT} file of a version this package reads "
                f"{READABLE_VERSIONS} (format={attrs.get('format')!r}, "
                f"format_version={self.format_version!r})"
            )
        status = self._attribute("status", str)
        if require_complete and status == "diverged":
            raise TrajectoryError(
                f"{self.path}: training diverged at step {attrs.get('diverged_step')} "
                "(non-finite loss); there is no path to measure"
            )
        if require_complete and status != "complete":
            raise TrajectoryError(f"{self.path}: status is {status!r}, not 'complete'")
        self.origin = str(attrs.get("origin", "trained"))
        try:
            self._attribute("config", str)  # there, and a string
            config = stored_config(attrs)
            # The train stage's runs are the schema's; a recorded or imported trajectory's
            # config describes a loop of the user's, with what of a run it could know (lr 0
            # where its loop had no schedule).
            if self.origin == "trained":
                config = validate_run(config, what=f"{self.path}: attribute config")
            elif not isinstance(config, dict):
                raise TypeError(f"a {type(config).__name__}")
            self.config = config
        except (ValueError, TypeError) as error:  # JSON's errors, ConfigError
            if isinstance(error, ConfigError):
                raise TrajectoryError(str(error).replace("\n ", "")) from None
            raise TrajectoryError(f"{self.path}: attribute config is not a run ({error})") from None
        self.world_size = self._attribute("world_size", np.integer)
        self.precision = self._attribute("precision", str)
        if self.world_size < 1 or self.precision not in PRECISIONS:
            raise TrajectoryError(
                f"{self.path}: attributes world_size = {self.world_size} and precision = "
                f"{self.precision!r}: not a number of processes and one of {PRECISIONS}"
            )
        # The shards of every minibatch gradient: batch_shards replicas in each DDP process (a
        # trajectory written before the key existed: one a process, as it was trained).
        self.shards = self.world_size * int(self.config.get("batch_shards", 1))
        # Version 3 says what made the file and which per-step columns it holds; earlier
        # versions were all trained by the train stage, with every column (clip_factor read as
        # 1 in version 1).
        self.step_columns = tuple(str(c) for c in attrs.get("step_columns", ALL_STEP_COLUMNS))
        self.param_count = self._attribute("param_count", np.integer)
        self.checkpoint_steps = check_claims(
            self.file,
            self.path,
            self.param_count,
            self.config,
            self.format_version,
            self.step_columns,
        )
        self.total_steps = int(self.checkpoint_steps[-1])

    def _attribute(self, name: str, kind: type):
        """A root attribute that must be there, a `kind` (str, or an integer)."""
        value = self.file.attrs.get(name, VERSION_1_ATTRIBUTES.get(name))
        if isinstance(value, bytes):
            value = value.decode("utf-8", "replace")
        integer = kind is np.integer
        if integer:  # a count: never negative, never a bool
            fits = isinstance(value, int | np.integer) and not isinstance(value, bool)
            fits = fits and value >= 0
        else:
            fits = isinstance(value, kind)
        if not fits:
            what = "non-negative integer" if integer else kind.__name__
            raise TrajectoryError(f"{self.path}: attribute {name} is {value!r}, not a {what}")
        return int(value) if integer else value

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
        return self._read(f"steps/{column}", slice(None))

    def batch_indices(self, steps) -> np.ndarray:
        """The minibatch indices of one step [B], or of a slice or increasing array of steps
        [n, B]."""
        self._require("batch_indices")
        return self._read("steps/batch_indices", steps)

    def _read(self, name: str, rows) -> np.ndarray:
        try:
            return self.file[name][rows]
        except OSError as error:  # a chunk no checksum covers, torn or overwritten
            raise TrajectoryError(f"{self.path}: /{name} is unreadable ({error})") from error
