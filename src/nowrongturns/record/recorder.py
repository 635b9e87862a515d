"""The public recorder: a few lines around any PyTorch training loop write a trajectory that the
measure stage and the workflow read as they read one the train stage wrote.

    with nowrongturns.Recorder("runs/mine/trajectory.h5", model, optimizer,
                               run={"model": "mylab.nets:build", "task": "mylab.data:load"},
                               checkpoint={"dense_first": 10, "every": 50}) as recorder:
        for indices, inputs, targets in loader:
            optimizer.zero_grad()
            loss = loss_fn(model(inputs), targets)
            loss.backward()
            optimizer.step()
            recorder.step(loss=loss, indices=indices)   # after the step, before a scheduler's

Checkpoint t holds w_t, the weights after t calls of `step` (checkpoint 0, the weights when the
recorder is made); the last one, at `close`, is w*. Each holds the weights, the buffers and, for
an optimizer of torch.optim's own with one parameter group, its state. Per step it keeps what it
is given, on the device, written at each checkpoint: the loss, the learning rate (the
optimizer's own where none is given), the minibatch's example indices in the task. What it was
given decides which sources the measure stage can compute (measure/stage.py
`missing_sources`).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch

from nowrongturns.record.log import StepLog, grown
from nowrongturns.record.run import optimizer_state, recorded_run
from nowrongturns.trajectory.format import partial_path
from nowrongturns.trajectory.state import flat_buffers, flat_parameters
from nowrongturns.trajectory.writer import TrajectoryWriter

DEFAULT_CHECKPOINT = {"dense_first": 10, "every": 10}


class RecordedLog(StepLog):
    """A user's steps: the loss on the device (StepLog), the learning rate on the host (a float
    the loop has anyway), the minibatch's indices on their own device."""

    def __init__(self, device: torch.device):
        super().__init__(None, device, capacity=1024)
        self.lrs = np.zeros(len(self.losses))
        self.indices: torch.Tensor | None = None  # [capacity, B], made at the first step
        self.columns: tuple[str, ...] = ()

    def _grow(self, capacity: int) -> None:
        super()._grow(capacity)
        self.lrs = np.concatenate([self.lrs, np.zeros(capacity - len(self.lrs))])
        if self.indices is not None:
            self.indices = grown(self.indices, capacity)

    def _block(self, start: int, stop: int) -> dict[str, np.ndarray]:
        block = super()._block(start, stop)
        block["lr"] = self.lrs[start:stop]
        if self.indices is not None:
            block["batch_indices"] = self.indices[start:stop].cpu().numpy()
        return {name: values for name, values in block.items() if name in self.columns}


class Recorder:
    """Records a user's training into a trajectory at `path` (format.py, origin "recorded").

    `run`: what the measure stage needs to rebuild the model and data (`model`, `task`: built-in
    names or "module:function" factories; `batch_size` unless indices are given; `seed`), the
    optimizer keys filled in from `optimizer`. `checkpoint`: {"dense_first": n, "every": k}:
    checkpoints at steps 0..n-1, every k-th, and the last. The file is written under
    `<path>.partial` and renamed at `close`; a loop that raises leaves nothing under `path`."""

    def __init__(self, path, model: torch.nn.Module, optimizer=None, run=None, checkpoint=None):
        self.path, self.model, self.optimizer = Path(path), model, optimizer
        self.run = recorded_run(run, optimizer)
        cadence = {**DEFAULT_CHECKPOINT, **(checkpoint or {})}
        self.dense_first, self.every = int(cadence["dense_first"]), int(cadence["every"])
        if self.dense_first < 1 or self.every < 1 or set(cadence) != set(DEFAULT_CHECKPOINT):
            raise ValueError(f"Recorder: checkpoint {checkpoint!r}: dense_first >= 1, every >= 1")
        self.device = next(model.parameters()).device
        self.log = RecordedLog(self.device)
        self.steps_taken = 0
        self.given: tuple[str, ...] | None = None  # the per-step values, fixed by the first step
        self.first_state = self._state()  # checkpoint 0, written with the file
        self.last_checkpoint = 0
        self.writer: TrajectoryWriter | None = None
        self.diverged: int | None = None

    def __enter__(self) -> Recorder:
        return self

    def __exit__(self, kind, error, traceback) -> None:
        if kind is None:
            self.close()
        else:
            self.abandon()

    def _state(self) -> dict:
        """Host copies of the weights, buffers and optimizer state (no RNG: nothing resumes)."""
        return {
            "weights": flat_parameters(self.model).float().cpu().numpy(),
            "buffers": flat_buffers(self.model).cpu().numpy(),
            "optimizer_state": optimizer_state(self.optimizer, self.run).float().cpu().numpy(),
            "rng_states": {},
        }

    def step(self, loss=None, lr=None, indices=None) -> None:
        """Record one optimizer step just taken: its loss (a tensor stays on the device), its
        learning rate, the indices of its minibatch's examples in the task's training set.
        Every step gives the same of these as the first."""
        if self.diverged is not None:
            return
        step = self.steps_taken
        given = tuple(
            name
            for name, value in (("loss", loss), ("lr", lr), ("batch_indices", indices))
            if value is not None or (name == "lr" and self.optimizer is not None)
        )
        if self.given is None:
            self.given = given
        elif given != self.given:
            raise ValueError(
                f"Recorder.step at step {step}: given {list(given)}, but the first step gave "
                f"{list(self.given)}; every step gives the same"
            )
        self.log.reserve(step)
        if loss is not None:
            self.log.losses[step] = loss.detach() if isinstance(loss, torch.Tensor) else loss
        if lr is None and self.optimizer is not None:
            lr = self.optimizer.param_groups[0]["lr"]
        if lr is not None:
            self.log.lrs[step] = lr
        if indices is not None:
            self._put_indices(step, torch.as_tensor(indices).reshape(-1))
        self.steps_taken = step + 1
        if self.steps_taken < self.dense_first or self.steps_taken % self.every == 0:
            self._checkpoint(self.steps_taken)

    def _put_indices(self, step: int, indices: torch.Tensor) -> None:
        if self.log.indices is None:
            shape = (len(self.log.losses), len(indices))
            self.log.indices = torch.zeros(shape, dtype=torch.int64, device=indices.device)
        elif len(indices) != self.log.indices.shape[1]:
            raise ValueError(
                f"Recorder.step at step {step}: {len(indices)} indices, but the first step's "
                f"minibatch had {self.log.indices.shape[1]} (every minibatch is the same size)"
            )
        self.log.indices[step] = indices

    def _open(self) -> None:
        """The file, once the first step said what is given per step (and the batch size)."""
        self.log.columns = ("step", *self.given)
        if self.log.indices is not None:
            self.run.setdefault("batch_size", self.log.indices.shape[1])
        if "batch_size" not in self.run:
            raise ValueError(
                "Recorder: run has no batch_size and the steps give no indices; the measure "
                "stage draws minibatches of the run's size"
            )
        partial_path(self.path).unlink(missing_ok=True)  # nothing resumes a user's loop
        self.writer = TrajectoryWriter(
            self.path,
            self.run,
            self.model,
            self.first_state["optimizer_state"].size,
            {},
            self.run["batch_size"],
            str(self.device),
            origin="recorded",
            step_columns=self.log.columns,
        )
        self.log.writer = self.writer
        self.log.checkpoint(0, self.first_state)

    def _checkpoint(self, step: int) -> None:
        if self.writer is None:
            self._open()
        self.diverged = self.log.checkpoint(step, self._state())
        self.last_checkpoint = step
        if self.diverged is not None:
            print(
                f"{self.path}: non-finite loss at step {self.diverged}; the trajectory ends "
                "there (status diverged) and later steps are not recorded",
                file=sys.stderr,
            )

    def close(self) -> Path:
        """Checkpoint the last step (w*) and rename the finished file to `path`."""
        if self.steps_taken == 0:
            self.abandon()
            raise ValueError(f"{self.path}: no step was recorded; there is no path to measure")
        try:
            if self.diverged is None and self.last_checkpoint != self.steps_taken:
                self._checkpoint(self.steps_taken)
            self.log.close()
        except BaseException:
            self.abandon()
            raise
        if self.diverged is not None:
            return self.writer.finish(status="diverged", diverged_step=self.diverged)
        return self.writer.finish()

    def abandon(self) -> None:
        """Stop without a file: the partial one is removed."""
        self.log.close(write_held=False)
        if self.writer is not None:
            self.writer.abandon()
            partial_path(self.path).unlink(missing_ok=True)
