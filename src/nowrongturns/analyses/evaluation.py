"""What the analyses along a path share: a run's model set to any point of weight space, and the
loss there of a fixed evaluation set of training examples.

The loss is taken as the measured gradients are (measure/gradients.py): the model in train mode, so
that BatchNorm normalizes by the statistics of the examples evaluated (the running statistics stored
with a checkpoint play no part), in chunks of one shard of the run's minibatch where the model has
BatchNorm (batch_size / shards, as the full-batch gradient's `full_batch_chunk: batch`: each chunk
normalized as training normalized a shard), without augmentation; each chunk's loss is computed
from the outputs cast to float64 and the chunks are summed in float64, so that losses along a
segment compare to well below float32's rounding of one example's loss.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch

from nowrongturns.config.factories import require_trusted
from nowrongturns.measure.gradients import chunk_examples
from nowrongturns.models import build_model, resolve_device
from nowrongturns.precision import apply_precision
from nowrongturns.step import EVALUATION, seeded_generator
from nowrongturns.tasks.load import load_task
from nowrongturns.trajectory.reader import TrajectoryReader
from nowrongturns.trajectory.state import load_flat


def evaluation_indices(seed: int, train_size: int, examples: int) -> torch.Tensor:
    """`examples` training examples drawn once per run (all where the task has fewer), in order."""
    if examples < 1:
        raise ValueError(f"examples must be at least 1, not {examples}")
    if examples >= train_size:
        return torch.arange(train_size)
    order = torch.randperm(train_size, generator=seeded_generator(seed, EVALUATION))
    return order[:examples].sort().values


class PathModel:
    """The model of the run a trajectory records, and its fixed evaluation set on the device.

    with TrajectoryReader(path) as traj:
        model = PathModel(traj, "auto", trusted, examples=512)
        model.set_weights(model.checkpoint(3))
        loss = model.loss()                    # float64 tensor on the device
    """

    def __init__(
        self,
        traj: TrajectoryReader,
        device: str,
        trusted: Iterable[str],
        examples: int,
        chunk: int | Callable[[torch.nn.Module], int] | None = None,
    ):
        """`chunk`: examples per chunk, or a function of the model giving them; None: as
        `full_batch_chunk: batch` chunks."""
        require_trusted(traj.config, trusted, traj.path)
        apply_precision("fp32")  # strict: losses along a segment differ in their last digits
        self.traj, self.device = traj, resolve_device(device)
        self.task = load_task(traj.config).to(self.device)
        self.model = build_model(traj.config, self.task).to(self.device).train()
        self.params = list(self.model.parameters())
        self.indices = evaluation_indices(traj.config["seed"], self.task.train_size, examples)
        if chunk is None:
            chunk = chunk_examples("batch", traj.config["batch_size"], traj.shards, self.model)
        elif callable(chunk):
            chunk = chunk(self.model)
        self.chunk = chunk
        # Held on the device: the same examples are evaluated at every point.
        self.chunks = [self.task.batch(part) for part in self.indices.split(chunk)]
        # The buffers of w* (BatchNorm's running statistics, unused in train mode).
        load_flat(self.model, traj.weights(-1), traj.buffers(-1))
        self.final = self.checkpoint(-1)

    def checkpoint(self, index: int) -> torch.Tensor:
        """The weights of checkpoint `index` (float64, on the device)."""
        return torch.from_numpy(self.traj.weights(index)).to(self.device).double()

    @torch.no_grad()
    def set_weights(self, flat: torch.Tensor) -> None:
        """Set the parameters to the flat `flat` (in parameters() order), rounded to float32."""
        torch.nn.utils.vector_to_parameters(flat.to(self.params[0].dtype), self.params)

    def chunk_loss(self, inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """The task's mean loss of one chunk, from the outputs in float64."""
        return self.task.loss(self.model(inputs).double(), targets)

    @torch.no_grad()
    def loss(self) -> torch.Tensor:
        """The mean loss of the evaluation set at the current weights, in float64."""
        total = torch.zeros((), dtype=torch.float64, device=self.device)
        for inputs, targets in self.chunks:
            total += self.chunk_loss(inputs, targets) * (len(inputs) / len(self.indices))
        return total

    def loss_at(self, flat: torch.Tensor) -> torch.Tensor:
        self.set_weights(flat)
        return self.loss()

    def measured(self) -> range:
        """The measured checkpoints: all but the last, w* itself."""
        return range(len(self.traj.checkpoint_steps) - 1)
