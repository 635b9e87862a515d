"""Synthetic tasks whose answer is known, the contrasting examples beside the real networks.

quadratic: least squares whose loss is f(w) = 1/2 (w - c)^T A (w - c), A of known spectrum
rosenbrock: Rosenbrock's valley as the loss of a 2-D point, where SGD takes wrong turns
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch

from nowrongturns.config.sizes import (  # shared with the torch-free counts
    OBJECTIVE_EXAMPLES,
    QUADRATIC_EXAMPLES,
)
from nowrongturns.tasks.task import Task, numpy_examples, positive_int

# Built from fixed seeds: the same problem for every run seed.
QUADRATIC_SEED = 0
QUADRATIC_EIGENVALUES = (0.01, 1.0)  # the smallest and largest, log-spaced: condition number 100


def exact_covariance_inputs(
    rng: np.random.Generator, count: int, eigenvectors: np.ndarray, eigenvalues: np.ndarray
) -> np.ndarray:
    """`count` inputs X [count, d] whose second moment X^T X / count is A = V diag(lambda) V^T
    exactly (up to rounding): X = sqrt(count) Q diag(sqrt(lambda)) V^T, with Q [count, d] the
    orthonormal columns (Q^T Q = I) of a Gaussian matrix. Needs count >= d."""
    orthonormal, _ = np.linalg.qr(rng.standard_normal((count, len(eigenvalues))))
    return (np.sqrt(count) * orthonormal * np.sqrt(eigenvalues)) @ eigenvectors.T


def quadratic_problem(
    width: int, split: str = "train"
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(X, y, A, c) of task quadratic in dimension d = `width`: least squares whose loss is a
    quadratic of known spectrum.

    A = V diag(lambda) V^T, lambda log-spaced over QUADRATIC_EIGENVALUES, V a random rotation;
    c a standard normal vector; the split's N = QUADRATIC_EXAMPLES[split] * d inputs X (float32)
    have X^T X / N = A, and targets y = X c (float32). So the loss 1/2 mean_i (x_i . w - y_i)^2
    is f(w) = 1/2 (w - c)^T A (w - c), its gradient A (w - c); on a minibatch B, the gradient is
    X_B^T X_B (w - c) / |B|. A and c (float64) are the same for both splits.
    """
    rng = np.random.default_rng(QUADRATIC_SEED)
    eigenvectors, _ = np.linalg.qr(rng.standard_normal((width, width)))
    eigenvalues = np.geomspace(*QUADRATIC_EIGENVALUES, width)
    hessian = (eigenvectors * eigenvalues) @ eigenvectors.T
    minimum = rng.standard_normal(width)
    split_rng = np.random.default_rng([QUADRATIC_SEED, list(QUADRATIC_EXAMPLES).index(split)])
    count = QUADRATIC_EXAMPLES[split] * width
    inputs = exact_covariance_inputs(split_rng, count, eigenvectors, eigenvalues)
    inputs = inputs.astype(np.float32)
    targets = (inputs.astype(np.float64) @ minimum).astype(np.float32)
    return inputs, targets, hessian, minimum


def load_quadratic(run: dict) -> Task:
    """Least squares in dimension d = run key `width` (reused as the dimension): f(w) =
    1/2 (w - c)^T A (w - c), A of condition number 100 (see `quadratic_problem`). Both splits
    have second moment A exactly, so train and validation loss are both f(w)."""
    width = positive_int(run, "width", "quadratic")
    train, validation = (
        numpy_examples(*quadratic_problem(width, split)[:2]) for split in QUADRATIC_EXAMPLES
    )
    return Task("quadratic", "regression", train, validation, 1, (width,))


def rosenbrock(points: torch.Tensor) -> torch.Tensor:
    """f(x, y) = (1 - x)^2 + 100 (y - x^2)^2 of each row (x, y) of `points` [B, 2]: a curved
    valley, steep across it (curvature about 200 (1 + 4 x^2)) and shallow along it, with its
    minimum 0 at (1, 1)."""
    x, y = points.unbind(-1)
    return (1 - x) ** 2 + 100 * (y - x**2) ** 2


def load_rosenbrock(run: dict) -> Task:
    """Rosenbrock's function as the loss of the point w (model `point`), whatever the examples:
    empty inputs [N, 0], targets 0. Every minibatch's gradient is the full gradient."""
    inputs = np.zeros((OBJECTIVE_EXAMPLES, 0), dtype=np.float32)
    targets = np.zeros(OBJECTIVE_EXAMPLES, dtype=np.int64)
    task = Task.from_arrays("objective", inputs, targets, num_classes=2, name="rosenbrock")
    return dataclasses.replace(task, objective=rosenbrock)


TASKS = {"quadratic": load_quadratic, "rosenbrock": load_rosenbrock}
