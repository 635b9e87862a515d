"""The gradients the measure stage takes at one checkpoint: which minibatches (the sources), in
which order, and each one's loss and flat gradient, a minibatch cut into shards as training cut it.

    requests = checkpoint_requests(task, step, batch, seed, sources, fixed, full_batch)
    for source, sample, (loss, gradient) in gradients_at(probe, stream, step, seed, sources, ...):
        ...
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import torch

from nowrongturns.optim.state import load_state_vector
from nowrongturns.precision import autocast
from nowrongturns.step import (
    AUGMENT_FIXED,
    AUGMENT_FULL,
    AUGMENT_SAMPLED,
    AUGMENT_TRAIN,
    FIXED,
    RANDOM_LABELS,
    SAMPLED,
    clip_gradients,
    minibatch_backward,
    seeded_generator,
    set_lr,
)
from nowrongturns.tasks.augment import Draw
from nowrongturns.tasks.pipeline import Request

# Examples per chunk where chunks need not be minibatches: the most that bounds memory.
WHOLE_CHUNK = 4096


def couples_examples(model: torch.nn.Module) -> bool:
    """Whether the model's output for one example depends on the others of its batch in train
    mode: BatchNorm (of any dimension, synchronized or not) normalizes across the batch."""
    return any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in model.modules())


def chunk_examples(full_batch_chunk: str | int, batch_size: int, shards: int, model) -> int:
    """Examples per chunk of a full-batch pass: `full_batch_chunk` examples, or with "batch"
    one shard of a minibatch where the model normalizes across its batch, so that each chunk is
    normalized as a shard of a training step and the full-batch gradient is the mean of minibatch
    gradients over a partition of the training set (the last chunk holds what remains); where
    it does not, any chunk gives that mean, and WHOLE_CHUNK takes fewer passes."""
    if full_batch_chunk == "batch":
        return batch_size // shards if couples_examples(model) else WHOLE_CHUNK
    return int(full_batch_chunk)


class GradientProbe:
    """Gradients of the task loss at the model's current weights, flattened in parameter order;
    a minibatch's as `shards` shards, as the DDP training of that many processes computed it."""

    def __init__(self, model: torch.nn.Module, task, shards: int = 1, precision: str = "fp32"):
        self.model, self.task, self.shards, self.precision = model, task, shards, precision
        self.params = list(model.parameters())

    def _flat_gradient(self) -> torch.Tensor:
        return torch.cat([p.grad.reshape(-1) for p in self.params])

    def _zero_grad(self) -> None:
        for param in self.params:
            param.grad = None

    def minibatch(self, inputs, targets, shuffle: torch.Tensor | None = None):
        """Loss and gradient on one minibatch; `shuffle` permutes its targets across its
        examples."""
        if shuffle is not None:
            targets = targets[shuffle.to(targets.device, non_blocking=True)]  # no queue drain
        self._zero_grad()
        loss = minibatch_backward(
            self.model, self.task, inputs, targets, self.shards, self.precision
        )
        return loss, self._flat_gradient()

    def full_batch(self, chunks) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean loss and its gradient over (inputs, targets, weight) chunks; weights sum to 1."""
        self._zero_grad()
        total_loss = 0.0
        for inputs, targets, weight in chunks:
            with autocast(self.precision, inputs.device):
                loss = self.task.loss(self.model(inputs), targets) * weight
            loss.backward()
            total_loss = total_loss + loss.detach()
        return total_loss, self._flat_gradient()

    @torch.no_grad()
    def update_direction(
        self, optimizer, optimizer_name: str, state, lr: float, clip: float | None
    ) -> torch.Tensor:
        """d_t = (w_t - w_{t+1}) / lr_t for the gradients now in .grad: clipped as training
        clipped them, then one optimizer step replayed from the stored optimizer state, then
        undone. The float32 difference of two nearby weights is exact, so d_t is the step the
        trajectory took, up to the step's own rounding."""
        clip_gradients(self.params, clip)
        before = [p.clone() for p in self.params]
        load_state_vector(optimizer, optimizer_name, state)
        set_lr(optimizer, lr)
        optimizer.step()
        direction = torch.cat([(b - p).reshape(-1) for b, p in zip(before, self.params)]) / lr
        torch._foreach_copy_(self.params, before)
        return direction


@dataclass(frozen=True)
class Sources:
    """What the measure stage takes at each checkpoint (config `measure`)."""

    samples: int = 8
    full_batch: bool = True
    random_labels: bool = True
    update: bool = True
    full_batch_every: int = 1  # the full batch at every N-th measured checkpoint, first and last
    train_batch: bool = True  # the minibatch training drew (where the trajectory holds it)
    fixed_batches: int = 0  # minibatches drawn once per run, measured at every checkpoint
    full_batch_chunk: int = 4096  # examples (chunk_examples resolves the config's "batch")

    def full_batch_at(self, index: int, measured: int) -> bool:
        """Whether measured checkpoint `index` of `measured` takes the full batch."""
        every = self.full_batch_every
        return self.full_batch and (index % every == 0 or index == measured - 1)


def fixed_batches(seed: int, train_size: int, batch_size: int, count: int) -> list[torch.Tensor]:
    """The run's `count` fixed minibatches (the reference's sample_n_batches), drawn once."""
    generator = seeded_generator(seed, FIXED)
    return [torch.randperm(train_size, generator=generator)[:batch_size] for _ in range(count)]


def checkpoint_requests(
    task,
    step: int,
    batch: torch.Tensor,
    seed: int,
    sources: Sources,
    fixed: list[torch.Tensor],
    full_batch: bool,
    batch_size: int | None = None,
):
    """The minibatches measured at one checkpoint, in the order `gradients_at` takes them: the
    train batch as training drew it (where `sources.train_batch`), `samples` fresh ones of
    `batch_size` (default the train batch's) with their own augmentation, the fixed ones (the
    same minibatch and augmentation at every checkpoint), the training set in chunks, each
    example augmented once."""
    if sources.train_batch:
        yield Request(batch, Draw(AUGMENT_TRAIN, (step,)), tag=("train_batch", 0))
    batch_size = len(batch) if batch_size is None else batch_size
    sampler = seeded_generator(seed, SAMPLED, step)
    for sample in range(sources.samples):
        indices = torch.randperm(task.train_size, generator=sampler)[:batch_size]
        yield Request(indices, Draw(AUGMENT_SAMPLED, (step, sample)), tag=("sampled", sample))
    for number, indices in enumerate(fixed):
        yield Request(indices, Draw(AUGMENT_FIXED, (number,)), tag=("fixed", number))
    if full_batch:
        size, chunk = task.train_size, sources.full_batch_chunk
        for start in range(0, size, chunk):
            indices = torch.arange(start, min(start + chunk, size))
            draw = Draw(AUGMENT_FULL, (step,), indices)
            yield Request(indices, draw, tag=("full_batch", len(indices) / size))


def gradients_at(
    probe: GradientProbe,
    stream,
    step: int,
    seed: int,
    sources: Sources,
    full_batch: bool,
    update_direction=None,
):
    """Yield (source, sample, (loss, gradient)) at one checkpoint, one gradient at a time, taking
    its minibatches from `stream` (of `checkpoint_requests`) as it goes.

    `update_direction`, where given, turns the train batch's gradient (still in the parameters'
    .grad) into the optimizer's own step direction (source `update`). Without the train batch
    (`sources.train_batch` false) neither it, its update nor its shuffled labels are taken."""
    if sources.train_batch:
        _, train_inputs, train_targets = next(stream)
        train_loss, train_gradient = probe.minibatch(train_inputs, train_targets)
        yield "train_batch", 0, (train_loss, train_gradient)
        if update_direction is not None:
            yield "update", 0, (train_loss, update_direction())
    for sample in range(sources.samples):
        _, inputs, targets = next(stream)
        yield "sampled", sample, probe.minibatch(inputs, targets)
    for number in range(sources.fixed_batches):
        _, inputs, targets = next(stream)
        yield "fixed", number, probe.minibatch(inputs, targets)
    if full_batch:
        chunks = -(-probe.task.train_size // sources.full_batch_chunk)
        parts = itertools.islice(stream, chunks)
        yield "full_batch", 0, probe.full_batch((i, t, w) for (_, w), i, t in parts)
    if sources.train_batch and sources.random_labels:  # the train batch, labels shuffled
        order = seeded_generator(seed, RANDOM_LABELS, step)
        shuffle = torch.randperm(len(train_targets), generator=order)
        yield "random_labels", 0, probe.minibatch(train_inputs, train_targets, shuffle)
