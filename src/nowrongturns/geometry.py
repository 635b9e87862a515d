"""The measure stage: RSI, EB and gamma of sampled gradients against w* = w_T, per checkpoint.

    nwt measure results/runs/base/trajectory.h5 --out results/runs/base/geometry.parquet

For each checkpoint but the last, one forward and backward pass per minibatch; every dot product
and norm accumulates in float64 on the device, and the rows of a checkpoint reach the host in one
transfer. The next checkpoint's weights are read from disk while the current one is measured.
"""

from __future__ import annotations

import functools
import math
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pandas as pd
import torch
from tqdm import tqdm

from .augment import AUGMENT_FULL, AUGMENT_SAMPLED, AUGMENT_TRAIN, Draw
from .data import RANDOM_LABELS, SAMPLED, load_task, seeded_generator
from .files import written
from .models import build_model, resolve_device
from .optim import build_optimizer, load_state_vector
from .train import clip_gradients
from .trajectory import TrajectoryReader, load_flat

COLUMNS = [
    "run",
    "step",
    "epoch",
    "progress",
    "source",
    "sample",
    "loss",
    "dist",
    "grad_norm",
    "dot",
    "rsi",
    "eb",
    "gamma",
    "z",
    "grad_norm_wd",
    "dot_wd",
    "rsi_wd",
    "eb_wd",
    "gamma_wd",
]
# What accumulates on the device per gradient: squares of norms, and dot products.
ACCUMULATED = ["loss", "dist", "grad_norm", "dot", "grad_norm_wd", "dot_wd"]
# The full-batch gradient is summed over chunks of this many examples, to bound memory.
FULL_BATCH_CHUNK = 4096


class GradientProbe:
    """Gradients of the task loss at the model's current weights, flattened in parameter order."""

    def __init__(self, model: torch.nn.Module, task):
        self.model, self.task = model, task
        self.params = list(model.parameters())

    def gradient(self, chunks) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean loss and its gradient over (inputs, labels, weight) chunks; weights sum to 1."""
        for param in self.params:
            param.grad = None
        losses = []
        for inputs, labels, weight in chunks:
            loss = self.task.loss(self.model(inputs), labels)
            if weight != 1.0:  # a minibatch is one chunk: no product to take, nor to backpropagate
                loss = loss * weight
            loss.backward()
            losses.append(loss.detach())
        total_loss = losses[0] if len(losses) == 1 else torch.stack(losses).sum()
        return total_loss, torch.cat([p.grad.reshape(-1) for p in self.params])

    def minibatch(self, indices: torch.Tensor, draw: Draw, shuffle: torch.Tensor | None = None):
        """Gradient on one minibatch, augmented as `draw` says; `shuffle` permutes its targets
        across its examples."""
        inputs, targets = self.task.batch(indices, draw=draw)
        if shuffle is not None:
            targets = targets[shuffle.to(targets.device)]
        return self.gradient([(inputs, targets, 1.0)])

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
        for group in optimizer.param_groups:
            group["lr"] = lr
        optimizer.step()
        direction = torch.cat([(b - p).reshape(-1) for b, p in zip(before, self.params)]) / lr
        torch._foreach_copy_(self.params, before)
        return direction

    def full_batch(self, step: int):
        """Gradient over the whole training set, each example augmented once, seeded by its
        index and the checkpoint's step."""
        size = self.task.train_size
        chunks = [
            torch.arange(start, min(start + FULL_BATCH_CHUNK, size))
            for start in range(0, size, FULL_BATCH_CHUNK)
        ]
        return self.gradient(
            (*self.task.batch(chunk, draw=Draw(AUGMENT_FULL, (step,), chunk)), len(chunk) / size)
            for chunk in chunks
        )


def gradient_stats(grad, weights64, to_final64, weight_decay: float) -> torch.Tensor:
    """[grad_norm^2, <G, w - w*>, and the same two for G + weight_decay * w], in float64."""
    grad64 = grad.double()
    stats = [grad64 @ grad64, grad64 @ to_final64]
    if weight_decay:
        grad_wd = grad64 + weight_decay * weights64
        stats += [grad_wd @ grad_wd, grad_wd @ to_final64]
    else:
        stats += [torch.full_like(stats[0], math.nan)] * 2
    return torch.stack(stats)


def geometry_table(accumulated: np.ndarray, labels: dict, param_count: int) -> pd.DataFrame:
    """The DESIGN section 5 table from the accumulated [rows, ACCUMULATED] float64 values and the
    rows' other columns (`labels`: run, step, epoch, progress, source, sample, and any extra):
    RSI, EB, gamma and z derived (DESIGN section 1), built in one go, as numpy arrays."""
    columns = dict(zip(ACCUMULATED, accumulated.T))
    for column in ("dist", "grad_norm", "grad_norm_wd"):
        columns[column] = np.sqrt(columns[column])  # accumulated as squares
    dist = columns["dist"]
    for suffix in ("", "_wd"):
        grad_norm, dot = columns[f"grad_norm{suffix}"], columns[f"dot{suffix}"]
        columns[f"rsi{suffix}"] = dot / dist**2
        columns[f"eb{suffix}"] = grad_norm / dist
        columns[f"gamma{suffix}"] = dot / (grad_norm * dist)
    columns["z"] = columns["gamma"] * math.sqrt(param_count)
    columns.update(labels)
    extra = [name for name in labels if name not in COLUMNS]
    return pd.DataFrame({name: columns[name] for name in [*COLUMNS, *extra]})


def gradients_at(
    probe: GradientProbe,
    batch,
    step: int,
    seed: int,
    samples: int,
    full_batch: bool,
    random_labels: bool,
    update_direction=None,
):
    """Yield (source, sample, (loss, gradient)) at one checkpoint, one gradient at a time.

    `update_direction`, where given, turns the train batch's gradient (still in the parameters'
    .grad) into the optimizer's own step direction (source `update`)."""
    # The train batch as training drew it; the shuffled-label gradient on the same inputs.
    train_draw = Draw(AUGMENT_TRAIN, (step,))
    train_loss, train_gradient = probe.minibatch(batch, train_draw)
    yield "train_batch", 0, (train_loss, train_gradient)
    if update_direction is not None:
        yield "update", 0, (train_loss, update_direction())
    sampler = seeded_generator(seed, SAMPLED, step)
    for sample in range(samples):
        indices = torch.randperm(probe.task.train_size, generator=sampler)[: len(batch)]
        yield "sampled", sample, probe.minibatch(indices, Draw(AUGMENT_SAMPLED, (step, sample)))
    if full_batch:
        yield "full_batch", 0, probe.full_batch(step)
    if random_labels:
        shuffle = torch.randperm(len(batch), generator=seeded_generator(seed, RANDOM_LABELS, step))
        yield "random_labels", 0, probe.minibatch(batch, train_draw, shuffle)


def measure(
    trajectory: str,
    out: str,
    run_name: str,
    samples: int,
    full_batch: bool,
    random_labels: bool,
    update: bool = True,
    device: str = "auto",
) -> pd.DataFrame:
    device = resolve_device(device)
    with TrajectoryReader(trajectory) as traj, ThreadPoolExecutor(1) as reader:
        run = traj.config
        task = load_task(run).to(device)
        model = build_model(run, task).to(device).train()
        probe = GradientProbe(model, task)
        final64 = torch.from_numpy(traj.weights(-1)).to(device).double()
        optimizer = build_optimizer(run, model)
        lrs = traj.steps("lr")

        def read(index: int):
            step = traj.checkpoint_steps[index]
            return (
                step,
                traj.weights(index),
                traj.buffers(index),
                traj.batch_indices(step),
                traj.optimizer_state(index) if update else None,
            )

        measured = range(len(traj.checkpoint_steps) - 1)  # the last checkpoint is w* itself
        pending = reader.submit(read, 0) if len(measured) else None
        blocks, row_steps, row_sources, row_samples = [], [], [], []
        for index in tqdm(measured, desc=f"measure {run_name}", disable=None):
            step, weights, buffers, batch, optimizer_state = pending.result()
            if index + 1 < len(measured):
                pending = reader.submit(read, index + 1)  # read ahead while this one computes
            load_flat(model, weights, buffers)
            weights64 = torch.from_numpy(weights).to(device).double()
            to_final64 = weights64 - final64
            dist_squared = (to_final64 @ to_final64).reshape(1)
            batch = torch.from_numpy(batch)
            update_direction = None
            if update:
                update_direction = functools.partial(
                    probe.update_direction,
                    optimizer,
                    run["optimizer"],
                    optimizer_state,
                    lrs[step],
                    run["clip_grad_norm"],
                )
            rows = []
            for source, sample, (loss, grad) in gradients_at(
                probe,
                batch,
                step,
                run["seed"],
                samples,
                full_batch,
                random_labels,
                update_direction,
            ):
                # An update already holds any weight decay the optimizer applies.
                decay = 0.0 if source == "update" else run["weight_decay"]
                stats = gradient_stats(grad, weights64, to_final64, decay)
                rows.append(torch.cat([loss.double().reshape(1), dist_squared, stats]))
                row_steps.append(step)
                row_sources.append(source)
                row_samples.append(sample)
            blocks.append(torch.stack(rows).cpu().numpy())  # the one host sync of a checkpoint
        epochs = traj.steps("epoch")

    steps = np.array(row_steps, dtype=np.int64)
    table = geometry_table(
        np.concatenate(blocks) if blocks else np.empty((0, len(ACCUMULATED))),
        {
            "run": run_name,
            "step": steps,
            "epoch": epochs[steps],
            "progress": steps / traj.total_steps,
            "source": np.array(row_sources, dtype=object),
            "sample": np.array(row_samples, dtype=np.int64),
        },
        traj.param_count,
    )
    with written(out) as tmp:
        table.to_parquet(tmp, index=False)
    return table
