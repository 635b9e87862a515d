"""The straight path to w* (Goodfellow et al. 2015; Lucas et al. 2021): at each measured
checkpoint, the loss at w_t + alpha (w* - w_t) for alpha from 0 to 1, on a fixed evaluation set
of training examples, in train mode (evaluation.py).

    nwt interpolation results/runs/base/trajectory.h5 \
        --out results/runs/base/interpolation.parquet --points 11 --examples 128

Columns: step, progress (step / T), alpha, loss. Cost: `points` - 1 forward passes of the
evaluation set per measured checkpoint (alpha = 1 is w*, taken once), no backward pass.

Refined (`refine`, the default): a bump narrower than the grid's spacing falls between its points,
so the midpoint of every interval is taken too, and then each interval beside a rise of the loss
is bisected, and again, down to `resolution` in alpha: the rise and its peak are found to that
resolution, at the cost of points - 1 more passes and a few for each rise. The table's attrs
hold the resolution asked for and the narrowest interval reached (`resolution`).
"""

from __future__ import annotations

import functools
from collections.abc import Iterable

import numpy as np
import pandas as pd

# A rise of the loss along alpha counts only above this share of the segment's largest loss:
# float32 forward passes round each point's loss at about 1e-7 of it, so that a flat segment
# would otherwise read as a random walk of rises.
MONOTONE_RTOL = 1e-5
MIN_POINTS = 11


def _rises(losses: list[float]) -> list[int]:
    """The indices i where the loss rises from point i to i + 1, beyond rounding."""
    margin = MONOTONE_RTOL * max(abs(value) for value in losses)
    return [i for i in range(len(losses) - 1) if losses[i + 1] > losses[i] + margin]


def refine(loss_at, alphas: list[float], losses: list[float], resolution: float):
    """(alphas, losses, narrowest interval) of the curve `loss_at` (alpha -> a number) sampled at
    `alphas` (sorted, with their `losses`), refined: every interval's midpoint, then, until no
    interval beside a rise is wider than `resolution`, the midpoints of the two intervals
    around each point the loss rises to (the rise's own, and the next, where the peak may be)."""
    curve = dict(zip(alphas, losses))
    split = list(zip(alphas, alphas[1:]))
    while split:
        for low, high in split:
            middle = (low + high) / 2
            curve[middle] = float(loss_at(middle))  # a host sync: the next split needs it
        points = sorted(curve)
        values = [curve[alpha] for alpha in points]
        around = {j for i in _rises(values) for j in (i, i + 1) if j + 1 < len(points)}
        split = [
            (points[j], points[j + 1])
            for j in sorted(around)
            if points[j + 1] - points[j] > resolution
        ]
    points = sorted(curve)
    narrowest = min(high - low for low, high in zip(points, points[1:]))
    return points, [curve[alpha] for alpha in points], narrowest


def _segment_loss(path, start, to_final, alpha: float):
    """The loss at w_t + alpha (w* - w_t), taken in float64 and rounded to float32 once."""
    return path.loss_at(start + alpha * to_final)


def interpolate(
    trajectory: str,
    out: str,
    run_name: str,
    points: int = 11,
    examples: int = 128,
    refine_to: float | None = None,
    device: str = "auto",
    trusted: Iterable[str] = (),
) -> pd.DataFrame:
    """The interpolation table of a trajectory: `points` values of alpha per measured checkpoint,
    and where `refine_to` is a resolution, more where the loss rises (`refine`)."""
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
    if refine_to is not None and not refine_to > 0:
        raise ValueError(
            f"resolution (analyses.interpolation.resolution) must be positive, not {refine_to}"
        )
    alphas = np.linspace(0.0, 1.0, points)
    narrowest = 1 / (points - 1)
    with TrajectoryReader(trajectory) as traj:
        path = PathModel(traj, device, trusted, examples)
        measured = path.measured()
        progress = Progress(f"interpolation {run_name}", len(measured), "checkpoint")
        final_loss = path.loss_at(path.final)  # alpha = 1 is w* on every segment: taken once
        steps = traj.checkpoint_steps[: len(measured)].astype(np.int64)
        curves = []
        for done, index in enumerate(measured, 1):
            start = path.checkpoint(index)
            loss_at = functools.partial(_segment_loss, path, start, path.final - start)
            segment = torch.stack([*(loss_at(a) for a in alphas[:-1]), final_loss])
            curve = (alphas.tolist(), segment.cpu().tolist())  # one transfer
            if refine_to is not None:
                *curve, reached = refine(loss_at, *curve, refine_to)
                narrowest = min(narrowest, reached)
            curves.append(curve)
            if progress.advance(done) or done == len(measured):
                progress.line(step=int(traj.checkpoint_steps[index]))
        progress.close()
        total_steps = traj.total_steps
    counts = [len(curve_alphas) for curve_alphas, _ in curves]
    table = pd.DataFrame(
        {
            "run": run_name,
            "step": np.repeat(steps, counts),
            "progress": np.repeat(steps / total_steps, counts),
            "alpha": np.concatenate([a for a, _ in curves] or [np.empty(0)]),
            "loss": np.concatenate([v for _, v in curves] or [np.empty(0)]),
        }
    )
    table.attrs["examples"] = len(path.indices)
    # The resolution asked for (None: not refined) and the narrowest interval of alpha reached.
    table.attrs["resolution"] = {"asked": refine_to, "reached": narrowest}
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
