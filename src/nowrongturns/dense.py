"""Dense mode: the geometry of every training step, replayed segment by segment.

    nwt replay results/runs/base/trajectory.h5 --segment 3 --out results/runs/base/dense/3.parquet
    nwt gather-dense results/runs/base/dense/*.parquet --out results/runs/base/dense.parquet

Segment k runs from checkpoint k to checkpoint k + 1. Each checkpoint holds the whole training
state (weights, buffers, optimizer state, RNG state), so a segment replays alone, in its own job:
the stored minibatches and learning rates, the same optimizer steps, and at each step the RSI, EB
and gamma of the very gradient training used, against w* = w_T. That costs one more training pass
in all, spread over as many jobs as there are segments, where the reference approach trains twice
in a row. The replayed end of a segment must equal the next checkpoint: bit for bit on the CPU.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import torch

from .data import load_task
from .files import written
from .geometry import geometry_table, gradient_stats
from .models import build_model, resolve_device
from .optim import build_optimizer, load_state_vector
from .train import forward_backward, set_rng_states
from .trajectory import TrajectoryError, TrajectoryReader, flat_parameters, load_flat

# Replayed weights may differ from the stored ones by this much (relative) on a GPU, where
# deterministic kernels still need not match bit for bit across processes.
GPU_TOLERANCE = 1e-5


def segment_steps(trajectory: str) -> list[list[int]]:
    """[first step, end step] of every segment of a trajectory."""
    with TrajectoryReader(trajectory) as traj:
        steps = traj.checkpoint_steps.tolist()
    return [[start, end] for start, end in zip(steps[:-1], steps[1:])]


def write_segments(trajectory: str, out: str) -> None:
    """The segments of a trajectory as JSON, for the workflow to make one replay job each."""
    with written(out) as tmp:
        tmp.write_text(json.dumps({"segments": segment_steps(trajectory)}))


def replay_segment(trajectory: str, segment: int, out: str, run_name: str,
                   device: str = "auto") -> pd.DataFrame:  # fmt: skip
    """Per-step geometry of the training gradients of one segment, checked against the next
    checkpoint."""
    device = resolve_device(device)
    torch.use_deterministic_algorithms(True)
    with TrajectoryReader(trajectory) as traj:
        if not 0 <= segment < len(traj.checkpoint_steps) - 1:
            raise ValueError(
                f"{trajectory}: no segment {segment}; it has {len(traj.checkpoint_steps) - 1}"
            )
        run = traj.config
        task = load_task(run).to(device)
        model = build_model(run, task).to(device).train()
        optimizer = build_optimizer(run, model)
        load_flat(model, traj.weights(segment), traj.buffers(segment))
        load_state_vector(optimizer, run["optimizer"], traj.optimizer_state(segment))
        set_rng_states(traj.rng_states(segment), device)
        final64 = torch.from_numpy(traj.weights(-1)).to(device).double()
        start, end = (int(s) for s in traj.checkpoint_steps[segment : segment + 2])
        lrs, losses, epochs = traj.steps("lr"), traj.steps("loss"), traj.steps("epoch")
        batches = torch.from_numpy(
            traj.batch_indices(slice(start, end))
        )  # one read, not one a step
        rows = []
        for step, batch in zip(range(start, end), batches):
            weights64 = flat_parameters(model).double()
            to_final64 = weights64 - final64
            loss = forward_backward(model, optimizer, task, batch, lrs[step])
            gradient = torch.cat([p.grad.reshape(-1) for p in model.parameters()])
            stats = gradient_stats(gradient, weights64, to_final64, run["weight_decay"])
            rows.append(torch.cat([loss.detach().double().reshape(1),
                                   (to_final64 @ to_final64).reshape(1), stats]))  # fmt: skip
            optimizer.step()
        values = torch.stack(rows).cpu().numpy()  # the one host sync of this segment
        _check_end(traj, segment, flat_parameters(model).cpu().numpy(), device)
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
    _check_losses(trajectory, table["loss"].to_numpy(), losses[steps], device)
    with written(out) as tmp:
        table.to_parquet(tmp, index=False)
    return table


def _check_end(traj: TrajectoryReader, segment: int, replayed: np.ndarray, device) -> None:
    stored = traj.weights(segment + 1)
    same = (
        np.array_equal(replayed, stored)
        if device.type == "cpu"
        else np.allclose(replayed, stored, rtol=GPU_TOLERANCE, atol=0)
    )
    if not same:
        worst = np.max(np.abs(replayed.astype(np.float64) - stored))
        raise TrajectoryError(
            f"{traj.path}: replaying segment {segment} does not reach checkpoint {segment + 1} "
            f"(step {traj.checkpoint_steps[segment + 1]}): largest weight difference {worst:.3g}"
        )


def _check_losses(trajectory: str, replayed: np.ndarray, stored: np.ndarray, device) -> None:
    """The replayed losses are the recorded ones: the same minibatches at the same weights."""
    if device.type == "cpu" and not np.array_equal(replayed.astype(np.float32), stored):
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
