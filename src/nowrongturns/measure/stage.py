"""The measure stage: RSI, EB and gamma of sampled gradients against w* = w_T, per checkpoint.

    nwt measure results/runs/base/trajectory.h5 --out results/runs/base/geometry.parquet

For each checkpoint but the last, one forward and backward pass per minibatch; every dot product
and norm accumulates in float64 on the device, and the rows of a checkpoint reach the host in one
transfer. On a GPU the next checkpoint's weights are read from disk while the current one is
measured. With `layers`, the same pass also writes gamma per parameter tensor (measure/layers.py).
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pandas as pd
import torch

from nowrongturns.config.factories import require_trusted
from nowrongturns.files import written
from nowrongturns.measure.gradients import (
    GradientProbe,
    Sources,
    checkpoint_requests,
    chunk_examples,
    fixed_batches,
    gradients_at,
)
from nowrongturns.measure.layers import Layers, layers_table
from nowrongturns.measure.stats import (
    ACCUMULATED,
    CheckpointRows,
    geometry_table,
    other_final_point,
)
from nowrongturns.models import build_model, resolve_device
from nowrongturns.optim.optimizers import build_optimizer
from nowrongturns.precision import apply_precision
from nowrongturns.progress import Progress
from nowrongturns.tasks.load import load_task
from nowrongturns.tasks.pipeline import batches
from nowrongturns.trajectory.reader import TrajectoryReader
from nowrongturns.trajectory.state import load_flat


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


# The sources a trajectory can lack, and what each needs that a recorded or imported one may
# not hold: sampled, fixed and full_batch need only the weights, the model and the task.
NEEDS = {
    "train_batch": "the minibatch indices of each step (Recorder.step(indices=...))",
    "random_labels": "the minibatch indices of each step (Recorder.step(indices=...))",
    "update": "the minibatch indices of each step and the optimizer state at each checkpoint "
    "(a torch.optim optimizer given to the Recorder)",
}


def missing_sources(traj: TrajectoryReader) -> dict[str, str]:
    """Source -> what it needs that the trajectory does not hold, for each it cannot give."""
    indices = "batch_indices" in traj.step_columns
    can = {"train_batch": indices, "random_labels": indices}
    can["update"] = indices and traj.optimizer_recorded
    return {source: NEEDS[source] for source, possible in can.items() if not possible}


def measured_sources(traj: TrajectoryReader, asked: dict[str, bool], required) -> dict:
    """`asked` (random_labels, update: each on where the trajectory allows) as the trajectory
    allows, with `train_batch`; a source in `required` that it cannot give stops, named."""
    missing = missing_sources(traj)
    for source in required:
        if source in missing:
            raise ValueError(
                f"{traj.path}: source {source!r} cannot be measured: it needs {missing[source]}, "
                f"which this {traj.origin} trajectory does not hold"
            )
    left_out = sorted(s for s in missing if asked.get(s, True))
    if left_out:
        print(
            f"{traj.path}: {traj.origin} trajectory without {', '.join(left_out)}: "
            + "; ".join(f"{s} needs {missing[s]}" for s in left_out),
            file=sys.stderr,
        )
    chosen = {source: on and source not in missing for source, on in asked.items()}
    return {**chosen, "train_batch": "train_batch" not in missing}


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
    layers: str | None = None,
    endpoint: tuple[np.ndarray, int] | None = None,
    require: Iterable[str] = (),
    **settings,
) -> pd.DataFrame:
    """The geometry table of a trajectory (docs/formats.md#geometryparquet), or of its measured
    checkpoints FIRST to LAST (`checkpoints`, one job of several), in `precision` (strict fp32
    unless asked), deterministic algorithms on. `settings`: the other fields of Sources. The fixed
    minibatches' indices are in the table's attrs (`fixed_batches`), kept in the Parquet file.
    A factory the trajectory names is imported only where `trusted` names it (config/factories.py).
    `other_final`: the trajectory of the run differing only in its seed, for `gamma_other`.
    `layers`: where to write the layers table (gamma per parameter tensor, measure/layers.py),
    computed in the same pass; None: not computed. `gamma_tangent` is computed where the model
    has scale-invariant weights (BatchNorm), NaN elsewhere. `endpoint`: (weights, their step)
    to measure against instead of w* = w_T, at every checkpoint before that step
    (measure/endpoints.py).
    A recorded or imported trajectory gives the sources it holds what they need for
    (`missing_sources`); one named in `require` that it cannot give stops the stage."""
    full_batch_chunk = settings.pop("full_batch_chunk", "batch")
    device = resolve_device(device)
    apply_precision(precision)
    with TrajectoryReader(trajectory) as traj, ThreadPoolExecutor(1) as reader:
        asked = {"random_labels": random_labels, "update": update}
        chosen = measured_sources(traj, asked, require)
        update = chosen["update"]
        run = traj.config
        require_trusted(run, trusted, trajectory)
        task = load_task(run).to(device)
        model = build_model(run, task).to(device).train()
        probe = GradientProbe(model, task, traj.shards, precision)
        chunk = chunk_examples(full_batch_chunk, run["batch_size"], traj.shards, model)
        sources = Sources(samples, full_batch, **chosen, **settings, full_batch_chunk=chunk)
        example_inputs, _ = task.batch(torch.arange(min(2, task.train_size)))
        split = Layers(model, example_inputs)
        final = traj.weights(-1) if endpoint is None else endpoint[0]
        final64 = torch.from_numpy(final).to(device).double()
        other_final64 = other_final_point(other_final, traj.param_count, device)
        optimizer = build_optimizer(run, model)
        lrs = traj.steps("lr")

        def read(index: int):
            return (
                traj.weights(index),
                traj.buffers(index),
                traj.optimizer_state(index) if update else None,
            )

        if endpoint is None:
            measured = measured_range(traj, checkpoints)
        else:  # the path cut at the endpoint (w_T has no train batch: never measured)
            before = min(endpoint[1], traj.total_steps)
            measured = range(int((traj.checkpoint_steps < before).sum()))
        total = len(traj.checkpoint_steps) - 1  # the last checkpoint is w* itself
        steps = traj.checkpoint_steps[measured.start : measured.stop]
        train_batches = [None] * len(steps)
        if sources.train_batch:
            train_batches = torch.from_numpy(traj.batch_indices(steps))  # one read
        fixed = fixed_batches(
            run["seed"], task.train_size, run["batch_size"], sources.fixed_batches
        )
        full = {index: sources.full_batch_at(index, total) for index in measured}
        requests = (
            request
            for index, step, batch in zip(measured, steps.tolist(), train_batches)
            for request in checkpoint_requests(
                task, step, batch, run["seed"], sources, fixed, full[index], run["batch_size"]
            )
        )
        stream = batches(task, requests, data_workers)
        # The next checkpoint is read while this one is measured where the passes run on a GPU.
        # On the CPU they run in this thread, which a reader thread's HDF5 calls (they hold the
        # interpreter's lock) only delay: the digits CNN measured 0.92 to 0.95 of the raw passes'
        # throughput reading ahead, 0.99 to 1.05 not.
        read_ahead = device.type == "cuda"
        pending = reader.submit(read, measured.start) if len(measured) and read_ahead else None
        progress = Progress(f"measure {run_name}", len(measured), "checkpoint")
        blocks, row_steps, row_sources, row_samples = [], [], [], []
        for done, (index, step) in enumerate(zip(measured, steps.tolist()), 1):
            if read_ahead:
                weights, buffers, optimizer_state = pending.result()
                if index + 1 < measured.stop:
                    pending = reader.submit(read, index + 1)
            else:
                weights, buffers, optimizer_state = read(index)
            load_flat(model, weights, buffers)
            weights64 = torch.from_numpy(weights).to(device).double()
            to_final64 = weights64 - final64
            to_other64 = weights64 - other_final64 if other_final64 is not None else None
            tangent64 = split.tangent(to_final64, weights64) if split.has_invariant else None
            checkpoint_rows = CheckpointRows(
                weights64, to_final64, to_other64, tangent64, split if layers else None
            )
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
            for source, sample, (loss, grad) in gradients_at(
                probe, stream, step, run["seed"], sources, full[index], update_direction
            ):
                # An update already holds any weight decay the optimizer applies.
                checkpoint_rows.add(loss, grad, 0.0 if source == "update" else run["weight_decay"])
                row_steps.append(step)
                row_sources.append(source)
                row_samples.append(sample)
            # the one host sync of a checkpoint
            blocks.append(checkpoint_rows.rows().cpu().numpy())
            if progress.advance(done) or done == len(measured):
                progress.line(step=step)
        progress.close()
        epochs = traj.steps("epoch")

    steps = np.array(row_steps, dtype=np.int64)
    width = len(ACCUMULATED) + (3 * len(split.names) if layers else 0)
    values = np.concatenate(blocks) if blocks else np.empty((0, width))
    labels = {
        "run": run_name,
        "step": steps,
        "epoch": epochs[steps],
        "progress": steps / traj.total_steps,
        "source": np.array(row_sources, dtype=object),
        "sample": np.array(row_samples, dtype=np.int64),
    }
    table = geometry_table(values[:, : len(ACCUMULATED)], labels, traj.param_count)
    table.attrs["fixed_batches"] = [batch.tolist() for batch in fixed]
    # How the gradients were cut: the full-batch pass's chunk, and each minibatch's shards.
    table.attrs["full_batch_chunk"] = {"setting": full_batch_chunk, "examples": chunk}
    table.attrs["batch_shards"] = probe.shards
    if layers:
        per_layer = layers_table(values[:, len(ACCUMULATED) :], labels, split.names)
        with written(layers) as tmp:
            per_layer.to_parquet(tmp, index=False)
    with written(out) as tmp:
        table.to_parquet(tmp, index=False)
    return table
