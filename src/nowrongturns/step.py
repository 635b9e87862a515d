"""The training step and the seeded streams: what train, replay and measure share, so that each
rebuilds the very step training took, bit for bit on the CPU.

    for step, indices in minibatches(seed, task.train_size, batch_size, start, total_steps):
        set_lr(optimizer, lrs[step])
        optimizer.zero_grad()
        loss = minibatch_backward(model, task, inputs, targets, shards, precision)
        clip_gradients(params, max_norm)
        optimizer.step()

Every random draw of the workflow comes from a stream seeded by (run seed, stream id, ids): the
data order of an epoch, the sampled minibatches of a checkpoint, the augmentation of a batch, the
analyses' evaluation set. Any draw is made alone, in any process, so a resumed run, dense replay
and the measure stage redraw what training drew. The ids below are part of every trajectory's
meaning: a changed number changes every result.
"""

from __future__ import annotations

import contextlib

import numpy as np
import torch

from nowrongturns import distributed
from nowrongturns.precision import autocast
from nowrongturns.tasks.augment import Draw
from nowrongturns.tasks.pipeline import Request

DATA_ORDER, SAMPLED, RANDOM_LABELS = range(3)  # an epoch's order; a checkpoint's samples, labels
AUGMENT = 3  # the augmentation streams, keyed (AUGMENT, stream) by the batch's Draw
AUGMENT_TRAIN, AUGMENT_SAMPLED, AUGMENT_FULL, AUGMENT_FIXED = ((AUGMENT, n) for n in range(4))
FIXED = 4  # the measure stage's fixed minibatches (measure.fixed_batches)
EVALUATION = 5  # the analyses' evaluation set
LANCZOS_START = 6  # the start vector of the sharpness analysis' Lanczos iteration


def seeded_generator(*keys: int) -> torch.Generator:
    seed = np.random.SeedSequence([int(k) for k in keys]).generate_state(1, np.uint64)[0]
    return torch.Generator().manual_seed(int(seed))


def epoch_order(seed: int, epoch: int, size: int) -> torch.Tensor:
    """The shuffled order of the training set in one epoch."""
    return torch.randperm(size, generator=seeded_generator(seed, DATA_ORDER, epoch))


def minibatches(seed: int, train_size: int, batch_size: int, start: int, total_steps: int):
    """(step, example indices) of every step from `start` on: each epoch's shuffled order cut
    into batches, the last incomplete one dropped."""
    steps_per_epoch = train_size // batch_size
    for step in range(start, total_steps):
        epoch, position = divmod(step, steps_per_epoch)
        if position == 0 or step == start:
            order = epoch_order(seed, epoch, train_size)
        yield step, order[position * batch_size : (position + 1) * batch_size]


def step_requests(steps, batch_size: int, shards: int = 1, rank: int = 0):
    """The pipeline requests of (step, indices) pairs: shard `rank` of `shards` of each step's
    minibatch, augmented as that step's draw by position in the whole minibatch; tagged with the
    step and all its indices."""
    if shards == 1:  # the whole minibatch: positions 0..B-1, Draw's default
        for step, indices in steps:
            yield Request(indices, Draw(AUGMENT_TRAIN, (step,)), tag=(step, indices))
        return
    part = distributed.shards(batch_size, shards)[rank]
    positions = torch.arange(batch_size)[part]
    for step, indices in steps:
        draw = Draw(AUGMENT_TRAIN, (step,), positions)
        yield Request(indices[part], draw, tag=(step, indices))


def minibatch_backward(
    model, task, inputs, targets, shards: int = 1, precision: str = "fp32"
) -> torch.Tensor:
    """The loss of one minibatch and its gradient, accumulated in .grad: as `shards` equal
    shards, each normalized by its own BatchNorm statistics, their losses and gradients
    averaged, as the replicas of DataParallel or the processes of DDP compute it. The running
    statistics kept are the first shard's, as DataParallel's and DDP's rank 0 keep them."""
    if shards == 1:
        with autocast(precision, inputs.device):
            loss = task.loss(model(inputs), targets)
        loss.backward()
        return loss.detach()
    total, first_buffers = 0.0, None
    no_sync = getattr(model, "no_sync", None)  # DDP: reduce once, after the last shard
    for number, part in enumerate(distributed.shards(len(inputs), shards)):
        last = number == shards - 1
        with no_sync() if no_sync and not last else contextlib.nullcontext():
            with autocast(precision, inputs.device):
                loss = task.loss(model(inputs[part]), targets[part]) / shards
            loss.backward()
        total = total + loss.detach()
        if number == 0:
            first_buffers = [buffer.clone() for buffer in model.buffers()]
    if first_buffers:
        torch._foreach_copy_(list(model.buffers()), first_buffers)
    return total


def set_lr(optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr


def forward_backward(
    model, optimizer, task, indices: torch.Tensor, lr: float, step: int, precision: str = "fp32"
) -> torch.Tensor:
    """One process's whole training step up to the gradient, for in-memory tasks: the lr set,
    step `step`'s minibatch (augmented as its draw), its loss and gradient, ready to clip and
    step. (The benchmarks' loops; the stages go through the input pipeline.)"""
    set_lr(optimizer, lr)
    optimizer.zero_grad()
    inputs, targets = task.batch(indices, draw=Draw(AUGMENT_TRAIN, (step,)))
    return minibatch_backward(model, task, inputs, targets, precision=precision)


def clip_gradients(params: list, max_norm: float | None) -> torch.Tensor | None:
    """Clip the gradients in .grad to global norm `max_norm` (clip_grad_norm_) and return the
    factor applied, min(1, max_norm / (norm + 1e-6)) as torch computes it; None: no clipping."""
    if max_norm is None:
        return None
    norm = torch.nn.utils.clip_grad_norm_(params, max_norm)
    return torch.clamp(max_norm / (norm + 1e-6), max=1.0)
