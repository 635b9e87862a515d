"""A PyTorch Lightning callback that records the trajectory of `Trainer.fit` (extra
`nowrongturns[lightning]`).

    from nowrongturns.integrations.lightning import TrajectoryCallback
    callback = TrajectoryCallback("runs/mine/trajectory.h5",
                                  run={"model": "mylab.nets:build", "task": "mylab.data:load"},
                                  network="net", indices=lambda batch: batch["index"])
    lightning.Trainer(callbacks=[callback], ...).fit(module, loader)

One recorded step per optimizer step (with gradient accumulation, the minibatch is every
micro-batch of the step, their indices together; the loss is the last micro-batch's). The
learning rate is the optimizer's as it steps, before any scheduler moves it.
"""

from __future__ import annotations

from collections.abc import Callable

import lightning.pytorch as pl
import torch

from nowrongturns.record.recorder import Recorder


class TrajectoryCallback(pl.Callback):
    """Records `Trainer.fit` through nowrongturns.Recorder (its `run` and `checkpoint`).

    `network`: the attribute of the LightningModule holding the network the run's model
    factory builds (default: the module itself, all its parameters). `indices`: a function of a
    batch giving its examples' indices in the task's training set (default: none recorded, and
    the measure stage computes no `train_batch`)."""

    def __init__(
        self,
        path,
        run: dict,
        checkpoint: dict | None = None,
        network: str | None = None,
        indices: Callable | None = None,
    ):
        self.path, self.run, self.checkpoint = path, run, checkpoint
        self.network, self.indices = network, indices
        self.recorder: Recorder | None = None
        self.lr: float | None = None
        self.batch_indices: list[torch.Tensor] = []

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        model = getattr(pl_module, self.network) if self.network else pl_module
        optimizer = trainer.optimizers[0] if len(trainer.optimizers) == 1 else None
        self.recorder = Recorder(self.path, model, optimizer, self.run, self.checkpoint)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx: int) -> None:
        if self.indices is not None:
            self.batch_indices.append(torch.as_tensor(self.indices(batch)).reshape(-1))

    def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:
        self.lr = optimizer.param_groups[0]["lr"]

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int) -> None:
        if trainer.global_step <= self.recorder.steps_taken:
            return  # a micro-batch of gradient accumulation: no step yet
        loss = outputs["loss"] if isinstance(outputs, dict) else outputs
        indices = torch.cat(self.batch_indices) if self.batch_indices else None
        self.batch_indices = []
        self.recorder.step(loss=loss, lr=self.lr, indices=indices)

    def on_train_end(self, trainer, pl_module) -> None:
        self.recorder.close()

    def on_exception(self, trainer, pl_module, exception: BaseException) -> None:
        if self.recorder is not None:
            self.recorder.abandon()
