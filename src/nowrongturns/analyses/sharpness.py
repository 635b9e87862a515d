"""Sharpness along the path: at each measured checkpoint the top eigenvalue lambda_max of the
Hessian of the loss on a fixed chunk of training examples (the full batch where the task has
fewer), in train mode (evaluation.py), beside 2 / lr, where plain gradient descent on a quadratic
of that curvature stops being stable (the edge of stability, Cohen et al. 2021).

    nwt sharpness results/runs/base/trajectory.h5 --out results/runs/base/sharpness.parquet \
        --examples 512 --iterations 20 --tolerance 1e-4

Lanczos on Hessian-vector products: the gradient's graph is built once per checkpoint (one
forward and backward pass with create_graph), then each product is one more backward pass through
it (double backward). The Lanczos vectors, their dot products and the tridiagonal matrix are
float64 (fully reorthogonalized: `iterations` vectors of the parameter count held); the products
themselves are float32, as the model is.

Columns: step, progress, lambda_max, lr (the step's learning rate), two_over_lr, iterations (the
products taken), residual (the Ritz residual, relative to lambda_max).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import numpy as np
import pandas as pd
import torch

from nowrongturns.analyses.evaluation import PathModel
from nowrongturns.files import written
from nowrongturns.progress import Progress
from nowrongturns.step import LANCZOS_START, seeded_generator
from nowrongturns.trajectory.reader import TrajectoryReader


def top_eigenvalue(
    product: Callable[[torch.Tensor], torch.Tensor],
    start: torch.Tensor,
    iterations: int,
    tolerance: float,
) -> tuple[float, int, float]:
    """(lambda_max, products taken, relative Ritz residual) of the symmetric operator `product`
    (float64 vector -> float64 vector), by Lanczos from `start`, stopping once the residual
    ||H s - theta s|| of the top Ritz pair is at most `tolerance` |theta| (for a symmetric
    matrix, an eigenvalue lies that close to theta) or the Krylov space is exhausted."""
    basis = [start / start.norm()]
    diagonal, off_diagonal = [], []
    theta, residual = 0.0, np.inf
    for used in range(1, iterations + 1):
        vector = product(basis[-1])
        diagonal.append(float(basis[-1] @ vector))
        # Full reorthogonalization, twice ("twice is enough"): in floating point the plain
        # three-term recurrence loses orthogonality once an eigenvalue converges.
        stacked = torch.stack(basis)
        for _ in range(2):
            vector = vector - stacked.T @ (stacked @ vector)
        beta = float(vector.norm())
        tridiagonal = np.diag(diagonal) + np.diag(off_diagonal, 1) + np.diag(off_diagonal, -1)
        values, vectors = np.linalg.eigh(tridiagonal)
        theta = float(values[-1])
        residual = beta * abs(vectors[-1, -1]) / max(abs(theta), 1e-300)
        if residual <= tolerance or beta <= 1e-12 * max(abs(theta), 1e-300):
            return theta, used, residual
        off_diagonal.append(beta)
        basis.append(vector / beta)
    return theta, iterations, residual


def hessian_product(path: PathModel) -> Callable[[torch.Tensor], torch.Tensor]:
    """v -> H v at the model's current weights, for the loss of `path`'s one chunk."""
    inputs, targets = path.chunks[0]
    loss = path.chunk_loss(inputs, targets)
    gradient = torch.autograd.grad(loss, path.params, create_graph=True)
    flat = torch.cat([part.reshape(-1) for part in gradient])

    def product(vector: torch.Tensor) -> torch.Tensor:
        parts = torch.autograd.grad(flat @ vector.to(flat.dtype), path.params, retain_graph=True)
        return torch.cat([part.reshape(-1) for part in parts]).double()

    return product


def sharpness(
    trajectory: str,
    out: str,
    run_name: str,
    examples: int = 512,
    iterations: int = 20,
    tolerance: float = 1e-4,
    device: str = "auto",
    trusted: Iterable[str] = (),
) -> pd.DataFrame:
    """The sharpness table of a trajectory: lambda_max at each measured checkpoint."""
    if iterations < 1 or not tolerance > 0:
        raise ValueError(
            f"iterations (analyses.sharpness.iterations) must be at least 1 and "
            f"tolerance positive, not {iterations} and {tolerance}"
        )
    with TrajectoryReader(trajectory) as traj:
        # One chunk: the Hessian of one loss, BatchNorm normalizing by all its examples at once.
        path = PathModel(traj, device, trusted, examples, chunk=examples)
        generator = seeded_generator(traj.config["seed"], LANCZOS_START)
        start = torch.randn(traj.param_count, generator=generator, dtype=torch.float64)
        start = start.to(path.device)
        measured = path.measured()
        steps = traj.checkpoint_steps[: len(measured)].astype(np.int64)
        lrs = traj.steps("lr")[steps].astype(np.float64)
        progress = Progress(f"sharpness {run_name}", len(measured), "checkpoint")
        rows = []
        for done, index in enumerate(measured, 1):
            path.set_weights(path.checkpoint(index))
            rows.append(top_eigenvalue(hessian_product(path), start, iterations, tolerance))
            if progress.advance(done) or done == len(measured):
                progress.line(step=int(steps[index]), lambda_max=rows[-1][0])
        progress.close()
        total_steps = traj.total_steps
    values = np.array(rows, dtype=np.float64).reshape(-1, 3)
    table = pd.DataFrame(
        {
            "run": run_name,
            "step": steps,
            "progress": steps / total_steps,
            "lambda_max": values[:, 0],
            "lr": lrs,
            "two_over_lr": 2.0 / lrs,
            "iterations": values[:, 1].astype(np.int64),
            "residual": values[:, 2],
        }
    )
    table.attrs["examples"] = len(path.indices)
    with written(out) as tmp:
        table.to_parquet(tmp, index=False)
    return table
