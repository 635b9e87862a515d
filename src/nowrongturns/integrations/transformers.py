"""A Hugging Face `TrainerCallback` that records the trajectory of `Trainer.train` (extra
`nowrongturns[transformers]`).

    from nowrongturns.integrations.transformers import TrajectoryCallback
    callback = TrajectoryCallback("runs/mine/trajectory.h5",
                                  run={"model": "mylab.nets:build", "task": "mylab.data:load",
                                       "batch_size": 32})
    transformers.Trainer(model=model, args=args, train_dataset=data, callbacks=[callback]).train()

One recorded step per optimizer step. The Trainer's callbacks see no per-step loss, nor which
examples a step drew: the measure stage then computes the sources that need only the weights.
They see the optimizer only where the Trainer was given it (`optimizers=(optimizer, None)`):
then its state and learning rate are recorded too, and the `update` source can be measured.
"""

from __future__ import annotations

import transformers

from nowrongturns.record.recorder import Recorder


class TrajectoryCallback(transformers.TrainerCallback):
    """Records `Trainer.train` through nowrongturns.Recorder (its `run` and `checkpoint`)."""

    def __init__(self, path, run: dict, checkpoint: dict | None = None):
        self.path, self.run, self.checkpoint = path, run, checkpoint
        self.recorder: Recorder | None = None

    def on_train_begin(self, args, state, control, model=None, optimizer=None, **kwargs):
        # Accelerate wraps the optimizer; its torch.optim one is inside.
        optimizer = getattr(optimizer, "optimizer", optimizer)
        self.recorder = Recorder(self.path, model, optimizer, self.run, self.checkpoint)

    def on_optimizer_step(self, args, state, control, **kwargs):
        # After the optimizer's step, before the scheduler's: the lr the step used.
        self.recorder.step()

    def on_train_end(self, args, state, control, **kwargs):
        self.recorder.close()
