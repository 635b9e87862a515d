"""A run's trajectory for a notebook: its steps, the per-step columns, and the weights of a
checkpoint as the named tensors `model.load_state_dict` takes, or the model itself rebuilt.

    traj = nowrongturns.open_run("results/runs/base").trajectory
    traj.checkpoint_steps                      # [0, 1, ..., 440]
    traj.steps()                               # DataFrame: loss, lr, grad_norm, ... per step
    step = traj.checkpoint_at(0.5)             # the checkpoint nearest half of training
    model = traj.model(step)                   # the run's model with w_step loaded
    model.load_state_dict(traj.weights(step))  # or into a model of your own making

The file is opened when first asked for something, torch imported when weights are.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd

from nowrongturns.trajectory.reader import TrajectoryReader


class Trajectory:
    """Read-only view of one trajectory.h5; opens nothing until asked."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._reader: TrajectoryReader | None = None

    def __repr__(self) -> str:
        return f"Trajectory({str(self.path)!r})"

    def __enter__(self) -> Trajectory:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        if self._reader is not None:
            self._reader.file.close()
            self._reader = None

    @property
    def reader(self) -> TrajectoryReader:
        """The package's reader of the file (checks its format and that it is complete)."""
        if self._reader is None:
            if not self.path.is_file():
                raise FileNotFoundError(f"{self.path}: no trajectory there")
            self._reader = TrajectoryReader(self.path)
        return self._reader

    @property
    def config(self) -> dict:
        """The run config that trained it, every key filled."""
        return self.reader.config

    @property
    def attributes(self) -> dict:
        """The file's attributes (torch_version, device, created, ...), the config as a dict."""
        attrs = dict(self.reader.file.attrs)
        attrs["config"] = self.config
        return {  # numpy scalars and arrays as Python's own
            name: value.tolist() if isinstance(value, np.ndarray | np.generic) else value
            for name, value in attrs.items()
        }

    @property
    def total_steps(self) -> int:
        """T: the optimizer steps of the run; checkpoint T is w*."""
        return self.reader.total_steps

    @property
    def checkpoint_steps(self) -> np.ndarray:
        """The step each stored checkpoint holds the weights after."""
        return self.reader.checkpoint_steps

    @property
    def step_columns(self) -> list[str]:
        """The per-step columns (`/steps`): loss, lr, grad_norm, ...; batch_indices apart."""
        return [name for name in self.reader.file["steps"] if name != "batch_indices"]

    def steps(self, columns: Iterable[str] | None = None) -> pd.DataFrame:
        """One row per optimizer step t (the step from w_t to w_{t+1}), indexed by step."""
        columns = self.step_columns if columns is None else list(columns)
        unknown = sorted(set(columns) - set(self.step_columns))
        if unknown:
            raise ValueError(
                f"{self.path}: no per-step column {', '.join(unknown)}; it has "
                f"{', '.join(self.step_columns)}"
            )
        table = pd.DataFrame({name: self.reader.steps(name) for name in columns if name != "step"})
        table.index = pd.Index(self.reader.steps("step"), name="step")
        return table

    def batch_indices(self, step: int) -> np.ndarray:
        """The training examples of the minibatch the optimizer drew at `step`."""
        return self.reader.batch_indices(int(step))

    def checkpoint_at(self, progress: float) -> int:
        """The checkpoint step nearest to `progress` (0 to 1) of training."""
        if not 0 <= progress <= 1:
            raise ValueError(f"progress {progress!r} is not between 0 and 1")
        steps = self.checkpoint_steps
        return int(steps[np.argmin(np.abs(steps - progress * self.total_steps))])

    def _index(self, step: int) -> int:
        (found,) = np.nonzero(self.checkpoint_steps == step)
        if not len(found):
            raise ValueError(
                f"{self.path}: step {step} is no checkpoint; checkpoints are at steps "
                f"{_shortened(self.checkpoint_steps)} (checkpoint_at(progress) finds the nearest)"
            )
        return int(found[0])

    def weights(self, step: int) -> dict:
        """The parameters and buffers of checkpoint `step` as named tensors (a state dict:
        `model.load_state_dict(traj.weights(step))`), checksum-verified. Buffers are stored as
        float32 (load_state_dict casts them back to the model's dtypes)."""
        import torch

        index = self._index(step)
        named = {}
        for group, flat in (
            ("params", self.reader.weights(index)),
            ("buffers", self.reader.buffers(index)),
        ):
            offset = 0
            for name, shape in self.reader.layout(group):
                size = int(np.prod(shape, dtype=np.int64))
                named[name] = torch.from_numpy(flat[offset : offset + size].reshape(shape))
                offset += size
        return named

    def task(self, trust: Iterable[str] = ()):
        """The run's task (data), as the stages load it. A task factory the config names is
        imported only when `trust` names it, as `nwt measure --trust` says."""
        from nowrongturns.config.factories import require_trusted
        from nowrongturns.tasks.load import load_task

        require_trusted(self.config, list(trust), self.path)
        return load_task(self.config)

    def model(self, step: int | None = None, trust: Iterable[str] = (), task=None):
        """The run's model rebuilt through its factories, with checkpoint `step`'s weights
        loaded (None: as initialized), in train mode as the stages measure it. A model or task
        factory the config names is imported only when `trust` names it (`nwt measure
        --trust`); `task`: the run's task where you loaded it already."""
        from nowrongturns.config.factories import require_trusted
        from nowrongturns.models import build_model

        require_trusted(self.config, list(trust), self.path)
        model = build_model(self.config, task if task is not None else self.task(trust))
        if step is not None:
            model.load_state_dict(self.weights(step))
        return model.train()


def _shortened(steps: np.ndarray) -> str:
    listed = [str(step) for step in steps.tolist()]
    return ", ".join(listed if len(listed) <= 8 else [*listed[:4], "...", *listed[-3:]])
