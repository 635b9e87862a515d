"""Dense mode: the geometry of every training step, replayed from the checkpoints.

    nwt replay results/runs/base/trajectory.h5 --segments 0 28 \
        --out results/runs/base/dense/0-28.parquet
    nwt gather-dense results/runs/base/dense/*-*.parquet --out results/runs/base/dense.parquet

Segment k runs from checkpoint k to checkpoint k + 1. Each checkpoint holds the whole training
state (weights, buffers, optimizer state, RNG state), so any run of consecutive segments replays
alone, in its own job: the stored minibatches and learning rates, the same optimizer steps, and at
each step the RSI, EB and gamma of the very gradient training used, against w* = w_T. That costs
one more training pass in all, spread over as many jobs as the segments are cut into, where the
reference approach trains twice in a row. The replayed end of every segment must equal the next
checkpoint: bit for bit on the CPU. How the segments are cut into jobs: segments.py.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable

import numpy as np
import pandas as pd
import torch

from nowrongturns.config.factories import require_trusted
from nowrongturns.files import written
from nowrongturns.measure.stats import (
    checkpoint_stats,
    geometry_table,
    gradient_stats,
    other_final_point,
)
from nowrongturns.models import build_model, resolve_device
from nowrongturns.optim.optimizers import build_optimizer
from nowrongturns.optim.state import load_state_vector
from nowrongturns.precision import apply_precision, uses_channels_last
from nowrongturns.step import clip_gradients, minibatch_backward, set_lr, step_requests
from nowrongturns.tasks.load import load_task
from nowrongturns.tasks.pipeline import batches
from nowrongturns.trajectory.format import TrajectoryError
from nowrongturns.trajectory.reader import TrajectoryReader
from nowrongturns.trajectory.state import flat_parameters, load_flat, set_rng_states

# Replayed weights may differ from the stored ones by this much (||replayed - stored|| over
# ||stored||) on a GPU, where deterministic kernels still need not match bit for bit across
# processes, and for a DDP run, whose shard gradients were averaged in another order.
TOLERANCE = 1e-5


def replay_segments(
    trajectory: str,
    first: int,
    last: int,
    out: str,
    run_name: str,
    device: str = "auto",
    data_workers: int = 0,
    trusted: Iterable[str] = (),
    other_final: str | None = None,
) -> pd.DataFrame:
    """Per-step geometry of the training gradients of segments `first` to `last` (inclusive),
    replayed from checkpoint `first`; every segment's end is checked against its checkpoint.
    The steps are training's: its precision, and a DDP run's shards one after the other.
    `other_final`: the trajectory of the run differing only in its seed, for `gamma_other`."""
    device = resolve_device(device)
    with TrajectoryReader(trajectory) as traj:
        replay = Replay(traj, first, last, device, data_workers, trusted)
        run, model = traj.config, replay.model
        final64 = torch.from_numpy(traj.weights(-1)).to(device).double()
        other_final64 = other_final_point(other_final, traj.param_count, device)
        start, end, exact = replay.start, replay.end, replay.exact
        lrs, losses, epochs = traj.steps("lr"), traj.steps("loss"), traj.steps("epoch")
        rows = []
        for _, loss, gradient in replay.steps():
            weights64 = flat_parameters(model).double()
            to_final64 = weights64 - final64
            to_other64 = weights64 - other_final64 if other_final64 is not None else None
            stats = gradient_stats(
                gradient[None], [run["weight_decay"]], weights64, to_final64, to_other64
            )[0]
            at_step = checkpoint_stats(weights64, to_final64, to_other64)
            rows.append(torch.cat([loss.double().reshape(1), at_step, stats]))
        end_errors = replay.end_errors
        values = torch.stack(rows).cpu().numpy()  # the rows reach the host once
        param_count, total_steps = traj.param_count, traj.total_steps

    steps = np.arange(start, end)
    table = geometry_table(
        values,
        {
            "run": run_name,
            "step": steps,
            "epoch": epochs[steps],
            "progress": steps / total_steps,
            "source": "train_batch",
            "sample": 0,
            "lr": lrs[steps],
        },
        param_count,
    )
    _check_losses(trajectory, table["loss"].to_numpy(), losses[steps], exact)
    print(
        f"{trajectory}: segments {first} to {last} replayed, largest relative error of a "
        f"segment's end {max(end_errors):.3g}",
        file=sys.stderr,
    )
    with written(out) as tmp:
        table.to_parquet(tmp, index=False)
    table.attrs["end_errors"] = end_errors  # for the GPU check; not in the file
    return table


class Replay:
    """Training's own steps from checkpoint `first` to the end of segment `last`, replayed from
    the stored state: the stored minibatches and learning rates, training's precision, a DDP
    run's shards one after the other. `steps()` yields each step's gradient before the step is
    taken; each segment's end is checked against its checkpoint (`end_errors`)."""

    def __init__(
        self,
        traj: TrajectoryReader,
        first: int,
        last: int,
        device: torch.device,
        data_workers: int = 0,
        trusted: Iterable[str] = (),
    ):
        segment_count = len(traj.checkpoint_steps) - 1
        if not 0 <= first <= last < segment_count:
            raise ValueError(
                f"{traj.path}: no segments {first} to {last}; it has {segment_count} "
                f"(0 to {segment_count - 1})"
            )
        run, self.precision, self.shards = traj.config, traj.precision, traj.shards
        require_trusted(run, trusted, traj.path)
        apply_precision(self.precision)
        self.traj, self.device, self.data_workers = traj, device, data_workers
        self.task = load_task(run).to(device)
        self.model = build_model(run, self.task).to(device).train()
        if uses_channels_last(self.model, device, self.precision):
            self.model = self.model.to(memory_format=torch.channels_last)
        self.optimizer = build_optimizer(run, self.model)
        self.params = list(self.model.parameters())
        _restore(traj, first, self.model, self.optimizer, device)
        steps = traj.checkpoint_steps
        self.checkpoint_index = {int(step): index for index, step in enumerate(steps)}
        self.start, self.end = int(steps[first]), int(steps[last + 1])
        # Bit for bit only where training ran in one process on the CPU.
        self.exact = device.type == "cpu" and traj.world_size == 1
        self.end_errors: list[float] = []

    def steps(self):
        """(step, loss, gradient) of every step, the model at w_t (the step not yet taken);
        the caller reads, never changes, the model and the gradient."""
        traj, run, model, optimizer = self.traj, self.traj.config, self.model, self.optimizer
        lrs = traj.steps("lr")
        batches_of_steps = torch.from_numpy(traj.batch_indices(slice(self.start, self.end)))
        requests = step_requests(
            zip(range(self.start, self.end), batches_of_steps), run["batch_size"]
        )
        for (step, _), inputs, targets in batches(self.task, requests, self.data_workers):
            set_lr(optimizer, lrs[step])
            optimizer.zero_grad()
            loss = minibatch_backward(
                model, self.task, inputs, targets, self.shards, self.precision
            )
            yield step, loss, torch.cat([p.grad.reshape(-1) for p in self.params])
            clip_gradients(self.params, run["clip_grad_norm"])
            optimizer.step()
            if step + 1 in self.checkpoint_index:  # the end of a segment
                reached = self.checkpoint_index[step + 1]
                error = _check_end(traj, reached - 1, flat_parameters(model), self.exact)
                self.end_errors.append(error)
                if error and step + 1 < self.end:
                    # Within tolerance, not equal: go on from the stored state, so that the
                    # differences of one segment do not carry into the next.
                    _restore(traj, reached, model, optimizer, self.device)


def _restore(traj: TrajectoryReader, index: int, model, optimizer, device) -> None:
    """The whole training state of checkpoint `index`: weights, buffers, optimizer, RNG."""
    load_flat(model, traj.weights(index), traj.buffers(index))
    load_state_vector(optimizer, traj.config["optimizer"], traj.optimizer_state(index))
    set_rng_states(traj.rng_states(index), device)


def _check_end(traj: TrajectoryReader, segment: int, replayed: torch.Tensor, exact: bool) -> float:
    """The relative error ||replayed - stored|| / ||stored|| of a replayed segment's end, in
    float64 on the weights' device (on a GPU the host would take 60 to 130 ms a segment for a
    ResNet-18); raises where it is too large, or not zero where replay must be `exact`."""
    stored64 = torch.from_numpy(traj.weights(segment + 1)).to(replayed.device).double()
    difference64 = replayed.double() - stored64
    error = float(difference64.norm() / stored64.norm().clamp(min=1e-300))
    if (exact and error != 0) or error > TOLERANCE:
        worst = float(difference64.abs().max())
        raise TrajectoryError(
            f"{traj.path}: replaying segment {segment} does not reach checkpoint {segment + 1} "
            f"(step {traj.checkpoint_steps[segment + 1]}): largest weight difference {worst:.3g}, "
            f"relative error {error:.3g}"
        )
    return error


def _check_losses(trajectory: str, replayed: np.ndarray, stored: np.ndarray, exact: bool) -> None:
    """The replayed losses are the recorded ones: the same minibatches at the same weights."""
    same = (
        np.array_equal(replayed.astype(np.float32), stored)
        if exact
        else np.allclose(replayed, stored, rtol=TOLERANCE, atol=0)
    )
    if not same:
        raise TrajectoryError(f"{trajectory}: the replayed losses differ from the recorded ones")


def gather(parts: list[str], out: str) -> pd.DataFrame:
    """One table of every segment's rows, in step order."""
    table = pd.concat([pd.read_parquet(part) for part in parts], ignore_index=True)
    table = table.sort_values("step", ignore_index=True)
    if table["step"].duplicated().any():
        raise ValueError(f"{out}: the segments overlap (a step appears twice)")
    with written(out) as tmp:
        table.to_parquet(tmp, index=False)
    return table
