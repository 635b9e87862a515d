"""The straight path to w* (Goodfellow et al. 2015; Lucas et al. 2021): at each measured
checkpoint, the loss at w_t + alpha (w* - w_t) for alpha from 0 to 1, on a fixed evaluation set
of training examples, in train mode (evaluation.py).

    nwt interpolation results/runs/base/trajectory.h5 \
        --out results/runs/base/interpolation.parquet --points 11 --examples 128

Columns: step, progress (step / T), alpha, loss. Cost: `points` - 1 forward passes of the
evaluation set per measured checkpoint (alpha = 1 is w*, taken once), no backward pass.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pandas as pd

# A rise of the loss along alpha counts only above this share of the segment's largest loss:
# float32 forward passes round each point's loss at about 1e-7 of it, so that a flat segment
# would otherwise read as a random walk of rises.
MONOTONE_RTOL = 1e-5
MIN_POINTS = 11


def interpolate(
    trajectory: str,
    out: str,
    run_name: str,
    points: int = 11,
    examples: int = 128,
    device: str = "auto",
    trusted: Iterable[str] = (),
) -> pd.DataFrame:
    """The interpolation table of a trajectory: `points` values of alpha per measured checkpoint."""
    # Imported here: the figures and the claims table read monotone_summary without torch.
    import torch

    from nowrongturns.analyses.evaluation import PathModel
    from nowrongturns.files import written
    from nowrongturns.progress import Progress
    from nowrongturns.trajectory.reader import TrajectoryReader

    if points < MIN_POINTS:
        raise ValueError(
            f"points (analyses.interpolation.points) must be at least {MIN_POINTS}, not {points}"
        )
    alphas = np.linspace(0.0, 1.0, points)
    with TrajectoryReader(trajectory) as traj:
        path = PathModel(traj, device, trusted, examples)
        measured = path.measured()
        progress = Progress(f"interpolation {run_name}", len(measured), "checkpoint")
        final_loss = path.loss_at(path.final)  # alpha = 1 is w* on every segment: taken once
        losses = []
        for done, index in enumerate(measured, 1):
            start = path.checkpoint(index)
            to_final = path.final - start
            # w_t + alpha (w* - w_t) in float64, rounded to the model's float32 once.
            segment = [path.loss_at(start + alpha * to_final) for alpha in alphas[:-1]]
            losses.append(torch.stack([*segment, final_loss]))
            if progress.advance(done) or done == len(measured):
                progress.line(step=int(traj.checkpoint_steps[index]))
        progress.close()
        steps = traj.checkpoint_steps[: len(measured)].astype(np.int64)
        total_steps = traj.total_steps
    values = torch.stack(losses).cpu().numpy() if losses else np.empty((0, points))
    table = pd.DataFrame(
        {
            "run": run_name,
            "step": np.repeat(steps, points),
            "progress": np.repeat(steps / total_steps, points),
            "alpha": np.tile(alphas, len(steps)),
            "loss": values.reshape(-1),
        }
    )
    table.attrs["examples"] = len(path.indices)
    with written(out) as tmp:
        table.to_parquet(tmp, index=False)
    return table


def largest_rises(table: pd.DataFrame) -> pd.Series:
    """Per step, the largest rise of the loss along alpha: the most the loss climbs above the
    lowest point before it on the segment to w* (0 where it never rises)."""

    def rise(rows: pd.DataFrame) -> float:
        loss = rows.sort_values("alpha")["loss"].to_numpy()
        return float(np.max(loss - np.minimum.accumulate(loss)))

    return table.groupby("step")[["alpha", "loss"]].apply(rise)


def monotone_summary(table: pd.DataFrame) -> dict:
    """How many segments to w* descend all the way: `checkpoints`, the share `monotone` whose
    loss never rises along alpha (beyond MONOTONE_RTOL of the segment's largest loss), and the
    largest rise of any (`largest_bump`, absolute and `largest_bump_relative` to that segment's
    loss at alpha 0) with its `largest_bump_step`."""
    if table.empty:
        raise ValueError("the interpolation table has no rows")
    rises = largest_rises(table)
    scale = table.groupby("step")["loss"].apply(lambda loss: loss.abs().max())
    start = table[table["alpha"] == table["alpha"].min()].set_index("step")["loss"]
    worst = rises.idxmax()
    return {
        "checkpoints": len(rises),
        "monotone": float((rises <= MONOTONE_RTOL * scale).mean()),
        "largest_bump": float(rises.max()),
        "largest_bump_relative": float(rises.max() / abs(start[worst])) if start[worst] else np.inf,
        "largest_bump_step": int(worst),
    }
