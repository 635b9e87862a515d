"""The measure stage: RSI, EB and gamma of sampled gradients against w* = w_T, per checkpoint.

    nwt measure results/runs/base/trajectory.h5 --out results/runs/base/geometry.parquet

For each checkpoint but the last, one forward and backward pass per minibatch; every dot product
and norm accumulates in float64 on the device, and the rows of a checkpoint reach the host in one
transfer. The next checkpoint's weights are read from disk while the current one is measured.
"""

from __future__ import annotations

import functools
import itertools
import json
import math
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from .augment import AUGMENT_FIXED, AUGMENT_FULL, AUGMENT_SAMPLED, AUGMENT_TRAIN, Draw
from .data import FIXED, RANDOM_LABELS, SAMPLED, load_task, seeded_generator
from .factories import require_trusted
from .files import written
from .models import build_model, resolve_device
from .optim import build_optimizer
from .optimizer_state import load_state_vector
from .pipeline import Request, batches
from .precision import apply_precision, autocast
from .progress import Progress
from .train import clip_gradients, minibatch_backward, set_lr
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
    "gamma_origin",
    "gamma_other",
]
# What accumulates on the device per gradient: squares of norms, and dot products. The first four
# are the checkpoint's (checkpoint_stats), the others the gradient's (gradient_stats).
ACCUMULATED = ["loss", "dist", "weight_norm", "other_dist", "grad_norm", "dot", "grad_norm_wd",
               "dot_wd", "dot_origin", "dot_other"]  # fmt: skip
# The full-batch gradient is summed over chunks of this many examples, to bound memory.
FULL_BATCH_CHUNK = 4096


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
            targets = targets[shuffle.to(targets.device)]
        self._zero_grad()
        loss = minibatch_backward(self.model, self.task, inputs, targets, self.shards,
                                  self.precision)  # fmt: skip
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
    fixed_batches: int = 0  # minibatches drawn once per run, measured at every checkpoint
    full_batch_chunk: int = FULL_BATCH_CHUNK

    def full_batch_at(self, index: int, measured: int) -> bool:
        """Whether measured checkpoint `index` of `measured` takes the full batch."""
        every = self.full_batch_every
        return self.full_batch and (index % every == 0 or index == measured - 1)


def fixed_batches(seed: int, train_size: int, batch_size: int, count: int) -> list[torch.Tensor]:
    """The run's `count` fixed minibatches (the reference's sample_n_batches), drawn once."""
    generator = seeded_generator(seed, FIXED)
    return [torch.randperm(train_size, generator=generator)[:batch_size] for _ in range(count)]


def checkpoint_requests(task, step: int, batch: torch.Tensor, seed: int, sources: Sources,
                        fixed: list[torch.Tensor], full_batch: bool):  # fmt: skip
    """The minibatches measured at one checkpoint, in the order `gradients_at` takes them: the
    train batch as training drew it, `samples` fresh ones with their own augmentation, the fixed
    ones (the same minibatch and augmentation at every checkpoint), the training set in chunks,
    each example augmented once."""
    yield Request(batch, Draw(AUGMENT_TRAIN, (step,)), tag=("train_batch", 0))
    sampler = seeded_generator(seed, SAMPLED, step)
    for sample in range(sources.samples):
        indices = torch.randperm(task.train_size, generator=sampler)[: len(batch)]
        yield Request(indices, Draw(AUGMENT_SAMPLED, (step, sample)), tag=("sampled", sample))
    for number, indices in enumerate(fixed):
        yield Request(indices, Draw(AUGMENT_FIXED, (number,)), tag=("fixed", number))
    if full_batch:
        size, chunk = task.train_size, sources.full_batch_chunk
        for start in range(0, size, chunk):
            indices = torch.arange(start, min(start + chunk, size))
            draw = Draw(AUGMENT_FULL, (step,), indices)
            yield Request(indices, draw, tag=("full_batch", len(indices) / size))


def checkpoint_stats(weights64, to_final64, to_other64) -> torch.Tensor:
    """[||w - w*||^2, ||w||^2, ||w - w*'||^2] in float64: w*' the final point of the run that
    differs only in its seed, `to_other64` = w - w*' (None where there is none: NaN)."""
    stats = [to_final64 @ to_final64, weights64 @ weights64]
    nan = torch.full_like(stats[0], math.nan)
    return torch.stack([*stats, to_other64 @ to_other64 if to_other64 is not None else nan])


def gradient_stats(grad, weights64, to_final64, weight_decay: float, to_other64) -> torch.Tensor:
    """[grad_norm^2, <G, w - w*>, the same two for G + weight_decay * w, and the controls <G, w>
    and <G, w - w*'>], in float64 (NaN where weight decay is 0, or where there is no w*')."""
    grad64 = grad.double()
    stats = [grad64 @ grad64, grad64 @ to_final64]
    nan = torch.full_like(stats[0], math.nan)
    if weight_decay:
        grad_wd = grad64 + weight_decay * weights64
        stats += [grad_wd @ grad_wd, grad_wd @ to_final64]
    else:
        stats += [nan, nan]
    stats += [grad64 @ weights64, grad64 @ to_other64 if to_other64 is not None else nan]
    return torch.stack(stats)


def other_final_point(trajectory: str | None, param_count: int, device) -> torch.Tensor | None:
    """w*' in float64 on `device`: the last weights of the seed sibling's trajectory (None where
    the run has none)."""
    if trajectory is None:
        return None
    with TrajectoryReader(trajectory) as other:
        if other.param_count != param_count:
            raise ValueError(
                f"{trajectory}: {other.param_count} parameters, not the {param_count} of the run "
                "it is the seed sibling of (--other-final must be a run differing only in seed)"
            )
        return torch.from_numpy(other.weights(-1)).to(device).double()


def geometry_table(accumulated: np.ndarray, labels: dict, param_count: int) -> pd.DataFrame:
    """The DESIGN section 5 table from the accumulated [rows, ACCUMULATED] float64 values and the
    rows' other columns (`labels`: run, step, epoch, progress, source, sample, and any extra):
    RSI, EB, gamma and z derived (DESIGN section 1), built in one go, as numpy arrays."""
    columns = dict(zip(ACCUMULATED, accumulated.T))
    for column in ("dist", "weight_norm", "other_dist", "grad_norm", "grad_norm_wd"):
        columns[column] = np.sqrt(columns[column])  # accumulated as squares
    dist = columns["dist"]
    for suffix in ("", "_wd"):
        grad_norm, dot = columns[f"grad_norm{suffix}"], columns[f"dot{suffix}"]
        columns[f"rsi{suffix}"] = dot / dist**2
        columns[f"eb{suffix}"] = grad_norm / dist
        columns[f"gamma{suffix}"] = dot / (grad_norm * dist)
    # The controls: the cosine of G with w itself, and with w - w*' of the seed sibling.
    for control, norm in (("origin", "weight_norm"), ("other", "other_dist")):
        dot = columns[f"dot_{control}"]
        columns[f"gamma_{control}"] = dot / (columns["grad_norm"] * columns[norm])
    columns["z"] = columns["gamma"] * math.sqrt(param_count)
    columns.update(labels)
    extra = [name for name in labels if name not in COLUMNS]
    return pd.DataFrame({name: columns[name] for name in [*COLUMNS, *extra]})


def gradients_at(probe: GradientProbe, stream, step: int, seed: int, sources: Sources,
                 full_batch: bool, update_direction=None):  # fmt: skip
    """Yield (source, sample, (loss, gradient)) at one checkpoint, one gradient at a time, taking
    its minibatches from `stream` (of `checkpoint_requests`) as it goes.

    `update_direction`, where given, turns the train batch's gradient (still in the parameters'
    .grad) into the optimizer's own step direction (source `update`)."""
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
    if sources.random_labels:  # the train batch's very inputs, its labels shuffled
        order = seeded_generator(seed, RANDOM_LABELS, step)
        shuffle = torch.randperm(len(train_targets), generator=order)
        yield "random_labels", 0, probe.minibatch(train_inputs, train_targets, shuffle)


def measured_range(traj: TrajectoryReader, checkpoints: tuple[int, int] | None) -> range:
    """The measured checkpoints of a job: all but the last (w* itself), or FIRST to LAST."""
    measured = len(traj.checkpoint_steps) - 1
    if checkpoints is None:
        return range(measured)
    first, last = checkpoints
    if not 0 <= first <= last < measured:
        raise ValueError(
            f"{traj.path}: no measured checkpoints {first} to {last}; it has {measured} "
            f"(0 to {measured - 1})"
        )
    return range(first, last + 1)


def measure(
    trajectory: str,
    out: str,
    run_name: str,
    samples: int = 8,
    full_batch: bool = True,
    random_labels: bool = True,
    update: bool = True,
    device: str = "auto",
    data_workers: int = 0,
    precision: str = "fp32",
    checkpoints: tuple[int, int] | None = None,
    trusted: Iterable[str] = (),
    other_final: str | None = None,
    **settings,
) -> pd.DataFrame:
    """The geometry table of a trajectory (DESIGN section 5), or of its measured checkpoints
    FIRST to LAST (`checkpoints`, one job of several), in `precision` (strict fp32 unless
    asked), deterministic algorithms on. `settings`: the other fields of Sources. The fixed
    minibatches' indices are in the table's attrs (`fixed_batches`), kept in the Parquet file.
    A factory the trajectory names is imported only where `trusted` names it (factories.py).
    `other_final`: the trajectory of the run differing only in its seed, for `gamma_other`."""
    sources = Sources(samples, full_batch, random_labels, update, **settings)
    device = resolve_device(device)
    apply_precision(precision)
    with TrajectoryReader(trajectory) as traj, ThreadPoolExecutor(1) as reader:
        run = traj.config
        require_trusted(run, trusted, trajectory)
        task = load_task(run).to(device)
        model = build_model(run, task).to(device).train()
        probe = GradientProbe(model, task, traj.world_size, precision)
        final64 = torch.from_numpy(traj.weights(-1)).to(device).double()
        other_final64 = other_final_point(other_final, traj.param_count, device)
        optimizer = build_optimizer(run, model)
        lrs = traj.steps("lr")

        def read(index: int):
            return (
                traj.weights(index),
                traj.buffers(index),
                traj.optimizer_state(index) if update else None,
            )

        measured = measured_range(traj, checkpoints)
        total = len(traj.checkpoint_steps) - 1  # the last checkpoint is w* itself
        steps = traj.checkpoint_steps[measured.start : measured.stop]
        train_batches = torch.from_numpy(traj.batch_indices(steps))  # one read
        fixed = fixed_batches(run["seed"], task.train_size, run["batch_size"],
                              sources.fixed_batches)  # fmt: skip
        full = {index: sources.full_batch_at(index, total) for index in measured}
        requests = (
            request
            for index, step, batch in zip(measured, steps.tolist(), train_batches)
            for request in checkpoint_requests(task, step, batch, run["seed"], sources, fixed,
                                               full[index])  # fmt: skip
        )
        stream = batches(task, requests, data_workers)
        pending = reader.submit(read, measured.start) if len(measured) else None
        progress = Progress(f"measure {run_name}", len(measured), "checkpoint")
        blocks, row_steps, row_sources, row_samples = [], [], [], []
        for done, (index, step) in enumerate(zip(measured, steps.tolist()), 1):
            weights, buffers, optimizer_state = pending.result()
            if index + 1 < measured.stop:
                pending = reader.submit(read, index + 1)  # read ahead while this one computes
            load_flat(model, weights, buffers)
            weights64 = torch.from_numpy(weights).to(device).double()
            to_final64 = weights64 - final64
            to_other64 = weights64 - other_final64 if other_final64 is not None else None
            at_checkpoint = checkpoint_stats(weights64, to_final64, to_other64)
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
                probe, stream, step, run["seed"], sources, full[index], update_direction
            ):
                # An update already holds any weight decay the optimizer applies.
                decay = 0.0 if source == "update" else run["weight_decay"]
                stats = gradient_stats(grad, weights64, to_final64, decay, to_other64)
                rows.append(torch.cat([loss.double().reshape(1), at_checkpoint, stats]))
                row_steps.append(step)
                row_sources.append(source)
                row_samples.append(sample)
            blocks.append(torch.stack(rows).cpu().numpy())  # the one host sync of a checkpoint
            if progress.advance(done) or done == len(measured):
                progress.line(step=step)
        progress.close()
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
    table.attrs["fixed_batches"] = [batch.tolist() for batch in fixed]
    with written(out) as tmp:
        table.to_parquet(tmp, index=False)
    return table


def measure_jobs(trajectory: str, out: str, job_checkpoints: int) -> None:
    """[first, last] measured checkpoints of each measure job, at most `job_checkpoints` each,
    as JSON, for the workflow to plan one measure job each."""
    if job_checkpoints < 1:
        raise ValueError(
            f"job_checkpoints (measure.job_checkpoints) must be at least 1, not {job_checkpoints}"
        )
    with TrajectoryReader(trajectory) as traj:
        measured = len(traj.checkpoint_steps) - 1
    jobs = [[first, min(first + job_checkpoints, measured) - 1]
            for first in range(0, measured, job_checkpoints)]  # fmt: skip
    with written(out) as tmp:
        tmp.write_text(json.dumps({"measured_checkpoints": measured, "jobs": jobs}))


def gather(parts: list[str], out: str) -> pd.DataFrame:
    """One geometry table of every measure job's rows, in checkpoint order: the one-job table."""
    tables = sorted((pd.read_parquet(part) for part in parts), key=lambda t: t["step"].min())
    table = pd.concat(tables, ignore_index=True)
    if table[["step", "source", "sample"]].duplicated().any():
        raise ValueError(f"{out}: the measure jobs overlap (a checkpoint appears twice)")
    table.attrs = tables[0].attrs
    with written(out) as tmp:
        table.to_parquet(tmp, index=False)
    return table
