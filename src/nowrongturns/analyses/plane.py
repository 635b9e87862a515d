"""The trajectory plane (Li et al. 2018): the top two principal directions of the differences
{w_t - w*} over the checkpoints, the checkpoints projected on them, and the loss on a grid of the
plane through w* they span, on a fixed evaluation set of training examples in train mode
(evaluation.py).

    nwt plane results/runs/base/trajectory.h5 --out results/runs/base/plane.parquet \
        --grid 21 --examples 512 --margin 0.25

The directions are those of the uncentered SVD of the matrix of differences (rows w_t - w*), found
from its Gram matrix (checkpoints x checkpoints, float64), so that no more than a block of
checkpoints is held at a time: the plane through w* that holds the most of sum_t ||w_t - w*||^2.
`explained_variance` (the table's attrs) is the share of that sum each direction holds. The first
direction is signed so that w_0 lies at x > 0, the second so that w_0 lies at y >= 0.

Rows of `kind` "checkpoint": step, progress, x, y (the projection), loss (at w_t itself) and
off_plane (||w_t - w*|| off the plane); rows of kind "grid": x, y, loss at w* + x d_1 + y d_2
(step and progress empty). Cost: a read of the checkpoints per block for the Gram matrix and one
more for the directions, then one forward pass of the evaluation set per checkpoint and per grid
point (grid^2), no backward pass.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pandas as pd
import torch

from nowrongturns.analyses.evaluation import PathModel
from nowrongturns.files import written
from nowrongturns.progress import Progress
from nowrongturns.trajectory.reader import TrajectoryReader

# Checkpoints held at once (float64 differences) while the Gram matrix is summed.
BLOCK_BYTES = 2**30


def difference_gram(path: PathModel, rows: int) -> torch.Tensor:
    """G[i, j] = <w_i - w*, w_j - w*> over checkpoints 0..rows-1, reading blocks of checkpoints
    (one pass where a block holds all of them)."""
    block = max(1, BLOCK_BYTES // (8 * path.traj.param_count))
    starts = range(0, rows, block)
    gram = torch.zeros(rows, rows, dtype=torch.float64, device=path.device)

    def differences(first: int) -> torch.Tensor:
        indices = range(first, min(first + block, rows))
        return torch.stack([path.checkpoint(index) - path.final for index in indices])

    for first in starts:
        held = differences(first)
        gram[first : first + len(held), first : first + len(held)] = held @ held.T
        for other in (start for start in starts if start > first):
            read = differences(other)
            part = held @ read.T
            gram[first : first + len(held), other : other + len(read)] = part
            gram[other : other + len(read), first : first + len(held)] = part.T
    return gram


def principal_plane(path: PathModel, rows: int):
    """(directions [2, P], projections [rows, 2], explained shares [2]) of the differences."""
    gram = difference_gram(path, rows)
    values, vectors = torch.linalg.eigh(gram)  # ascending
    values, vectors = values.flip(0)[:2], vectors.flip(1)[:, :2]
    if len(values) < 2 or values[1] <= 1e-12 * values[0]:
        raise ValueError(
            f"{path.traj.path}: the checkpoints span fewer than two directions "
            "from w*; there is no plane"
        )
    singular = values.sqrt()
    # d_k = sum_i u_k[i] (w_i - w*) / s_k, one more read of the checkpoints.
    directions = torch.zeros(2, path.traj.param_count, dtype=torch.float64, device=path.device)
    for index in range(rows):
        directions += torch.outer(vectors[index], path.checkpoint(index) - path.final)
    directions /= singular[:, None]
    signs = torch.where(vectors[0] < 0, -1.0, 1.0).to(directions)  # w_0 at x > 0, y >= 0
    directions *= signs[:, None]
    projections = vectors * singular * signs  # <w_i - w*, d_k> = s_k u_k[i]
    return directions, projections, values / gram.trace()


def grid_axis(values: np.ndarray, points: int, margin: float) -> np.ndarray:
    low, high = float(values.min()), float(values.max())
    span = high - low or 1.0
    return np.linspace(low - margin * span, high + margin * span, points)


def plane(
    trajectory: str,
    out: str,
    run_name: str,
    grid: int = 21,
    examples: int = 512,
    margin: float = 0.25,
    device: str = "auto",
    trusted: Iterable[str] = (),
) -> pd.DataFrame:
    """The plane table of a trajectory: its checkpoints, and a grid x grid of losses."""
    if grid < 2 or margin < 0:
        raise ValueError(
            f"grid (analyses.plane.grid) must be at least 2 and margin at least 0, "
            f"not {grid} and {margin}"
        )
    with TrajectoryReader(trajectory) as traj:
        path = PathModel(traj, device, trusted, examples)
        rows = len(traj.checkpoint_steps)  # w* too: at the origin, its loss the grid's centre
        directions, projections, explained = principal_plane(path, rows)
        progress = Progress(f"plane {run_name}", rows + grid * grid, "point")
        checkpoint_losses, off_plane = [], []
        for index in range(rows):
            weights = path.checkpoint(index)
            checkpoint_losses.append(path.loss_at(weights))
            rest = weights - path.final - projections[index] @ directions
            off_plane.append(rest.norm())
            if progress.advance(index + 1):
                progress.line(step=int(traj.checkpoint_steps[index]))
        points = projections.cpu().numpy()
        xs, ys = (grid_axis(points[:, axis], grid, margin) for axis in (0, 1))
        grid_losses = []
        for row, y in enumerate(ys):
            for x in xs:
                grid_losses.append(path.loss_at(path.final + x * directions[0] + y * directions[1]))
            if progress.advance(rows + (row + 1) * grid) or row == grid - 1:
                progress.line(y=float(y))
        progress.close()
        steps = traj.checkpoint_steps.astype(np.int64)
        total_steps = traj.total_steps
    grid_x, grid_y = np.meshgrid(xs, ys)
    checkpoints = pd.DataFrame(
        {
            "kind": "checkpoint",
            "step": pd.array(steps, dtype="Int64"),
            "progress": steps / total_steps,
            "x": points[:, 0],
            "y": points[:, 1],
            "loss": torch.stack(checkpoint_losses).cpu().numpy(),
            "off_plane": torch.stack(off_plane).cpu().numpy(),
        }
    )
    surface = pd.DataFrame(
        {
            "kind": "grid",
            "step": pd.array([None] * grid * grid, dtype="Int64"),
            "progress": np.nan,
            "x": grid_x.reshape(-1),
            "y": grid_y.reshape(-1),
            "loss": torch.stack(grid_losses).cpu().numpy(),
            "off_plane": 0.0,
        }
    )
    table = pd.concat([checkpoints, surface], ignore_index=True)
    table.insert(0, "run", run_name)
    table.attrs.update(explained_variance=explained.cpu().tolist(), examples=len(path.indices))
    with written(out) as tmp:
        table.to_parquet(tmp, index=False)
    return table
