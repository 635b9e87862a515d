"""Sharpness along the path, against the optimizer's own stability threshold: at each measured
checkpoint the top eigenvalue lambda_max of the Hessian of the loss on a fixed set of training
examples (the full batch where the task has fewer), in train mode (evaluation.py), taken in chunks
of one shard of a training minibatch; the curvature of sampled training minibatches along their
own gradients (batch sharpness, what hovers at the edge under SGD: Andreyev & Beneventano 2024);
and for Adam the top eigenvalue of its preconditioned Hessian P^-1 H, P from the stored second
moments (what settles at Adam's threshold: Cohen et al. 2022).

    nwt sharpness results/runs/base/trajectory.h5 --out results/runs/base/sharpness.parquet \
        --examples 512 --iterations 20 --tolerance 1e-4 --batches 4

Lanczos on Hessian-vector products accumulated over chunks (curvature.py): memory of one chunk's
double backward, whatever `examples`. A chunk is one shard of a training minibatch where the model
normalizes across its batch (BatchNorm: each chunk normalized as training normalized a shard), and
a quarter of one elsewhere: a double backward holds about three times what a training step holds
for as many examples (a ResNet), five with attention by its plain formula, the one with a double
backward (benchmarks/sharpness_memory.py); the Hessian of a mean loss of independent examples is
the weighted sum of its parts', so that a product then holds about what a step holds. Where a
product runs out of GPU memory, it and every later one keep their graphs' saved tensors in host
memory: about a step's memory on the GPU (curvature.py).
The Lanczos vectors, their dot products and the tridiagonal matrix are float64 (fully
reorthogonalized: `iterations` vectors of the parameter count held).

Columns: step, progress, lambda_max, threshold (the optimizer's own: 2/lr, 2(1 + beta)/lr, or for
Adam 2(1 + beta1)/((1 - beta1) lr), of lambda_max_preconditioned), converged and residual (the
largest relative Ritz residual of the checkpoint's Lanczos runs, against `tolerance`), iterations,
lr, batch_sharpness (NaN with --batches 0), lambda_max_preconditioned (NaN but for Adam, and at
step 0, before Adam has moments).
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np
import pandas as pd
import torch

from nowrongturns.analyses.curvature import (
    Offload,
    adam_preconditioner,
    batch_sharpness,
    hessian_product,
    preconditioned,
    stability_threshold,
    top_eigenvalue,
)
from nowrongturns.analyses.evaluation import PathModel
from nowrongturns.distributed import shards as shard_positions
from nowrongturns.files import written
from nowrongturns.measure.gradients import couples_examples
from nowrongturns.optim.optimizers import build_optimizer
from nowrongturns.progress import Progress
from nowrongturns.step import AUGMENT_SAMPLED, LANCZOS_START, SAMPLED, seeded_generator
from nowrongturns.tasks.augment import Draw
from nowrongturns.trajectory.reader import TrajectoryReader

PRECONDITIONED = ("adam", "adamw")  # the optimizers whose preconditioner is read from the state


def sharpness_batches(seed: int, step: int, train_size: int, batch_size: int, count: int):
    """The first `count` sampled minibatches of checkpoint `step`, with their draws: those of the
    measure stage's source `sampled` (measure/gradients.py)."""
    sampler = seeded_generator(seed, SAMPLED, step)
    return [
        (
            torch.randperm(train_size, generator=sampler)[:batch_size],
            Draw(AUGMENT_SAMPLED, (step, n)),
        )
        for n in range(count)
    ]


# The chunks a shard is taken in where the model's examples are independent (see above).
PRODUCT_PARTS = 4


def product_parts(model: torch.nn.Module) -> int:
    return 1 if couples_examples(model) else PRODUCT_PARTS


def _minibatch_chunks(path: PathModel, indices, draw, shards: int):
    """A minibatch as (inputs, targets, weight) chunks: each of its `shards` shards, cut in
    `product_parts` of the model."""
    inputs, targets = path.task.batch(indices, draw=draw)
    positions = torch.arange(len(indices), device=inputs.device)
    parts = product_parts(path.model)
    for shard in shard_positions(len(indices), shards):
        for part in positions[shard].tensor_split(parts):
            yield inputs[part], targets[part], len(part) / len(indices)


def sharpness(
    trajectory: str,
    out: str,
    run_name: str,
    examples: int = 512,
    iterations: int = 20,
    tolerance: float = 1e-4,
    batches: int = 4,
    device: str = "auto",
    trusted: Iterable[str] = (),
) -> pd.DataFrame:
    """The sharpness table of a trajectory: one row per measured checkpoint."""
    if iterations < 1 or not tolerance > 0 or batches < 0:
        raise ValueError(
            f"iterations (analyses.sharpness.iterations) must be at least 1, tolerance "
            f"positive and batches at least 0, not {iterations}, {tolerance} and {batches}"
        )
    with TrajectoryReader(trajectory) as traj:
        run = traj.config
        shard = run["batch_size"] // traj.shards

        def chunk(model) -> int:  # examples a product takes at once
            return max(1, shard // product_parts(model))

        path = PathModel(traj, device, trusted, examples, chunk=chunk)
        chunks = [(i, t, len(t) / len(path.indices)) for i, t in path.chunks]
        loss_of = path.chunk_loss
        optimizer = build_optimizer(run, path.model)
        generator = seeded_generator(run["seed"], LANCZOS_START)
        start = torch.randn(traj.param_count, generator=generator, dtype=torch.float64)
        start = start.to(path.device)
        measured = path.measured()
        steps = traj.checkpoint_steps[: len(measured)].astype(np.int64)
        lrs = traj.steps("lr")[steps].astype(np.float64)
        progress = Progress(f"sharpness {run_name}", len(measured), "checkpoint")
        offload = Offload()  # one for the job: a product out of device memory moves them all
        rows = []
        for done, index in enumerate(measured, 1):
            step = int(steps[index])
            path.set_weights(path.checkpoint(index))
            product = hessian_product(loss_of, path.params, chunks, offload)
            lambda_max, used, residual = top_eigenvalue(product, start, iterations, tolerance)
            preconditioned_max = math.nan
            if run["optimizer"] in PRECONDITIONED:
                state = traj.optimizer_state(index)
                scale = adam_preconditioner(optimizer, run["optimizer"], state, path.params)
                if scale is not None:
                    scaled = preconditioned(product, scale.to(path.device))
                    preconditioned_max, more, other = top_eigenvalue(
                        scaled, start, iterations, tolerance
                    )
                    used, residual = used + more, max(residual, other)
            sampled = sharpness_batches(
                run["seed"], step, path.task.train_size, run["batch_size"], batches
            )
            along_gradient = [
                batch_sharpness(
                    loss_of, path.params, _minibatch_chunks(path, idx, draw, traj.shards), offload
                )
                for idx, draw in sampled
            ]
            rows.append(
                {
                    "lambda_max": lambda_max,
                    "threshold": stability_threshold(run, lrs[index], optimizer),
                    "converged": residual <= tolerance,
                    "residual": residual,
                    "iterations": used,
                    "batch_sharpness": float(np.mean(along_gradient)) if batches else math.nan,
                    "lambda_max_preconditioned": preconditioned_max,
                }
            )
            if progress.advance(done) or done == len(measured):
                progress.line(step=step, lambda_max=lambda_max)
        progress.close()
        total_steps = traj.total_steps
    columns = ["lambda_max", "threshold", "converged", "residual", "iterations"]
    columns += ["batch_sharpness", "lambda_max_preconditioned"]
    values = pd.DataFrame(rows, columns=columns)
    table = pd.DataFrame(
        {"run": run_name, "step": steps, "progress": steps / total_steps, "lr": lrs}
    )
    table = pd.concat([table, values.astype({"converged": bool, "iterations": np.int64})], axis=1)
    table.attrs["examples"] = len(path.indices)
    table.attrs["chunk"] = path.chunk
    table.attrs["batches"] = batches
    with written(out) as tmp:
        table.to_parquet(tmp, index=False)
    return table
