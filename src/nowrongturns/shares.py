"""The share of training each measured checkpoint stands for, so that a summary over a path
weighs a stretch of training by its length, not by how densely it was checkpointed.

Checkpoint k (at progress p_k = step / T) stands for the steps from it to the next checkpoint,
p_{k+1} - p_k; the last measured one for the steps up to w* (progress 1). The dense first
checkpoints (steps 0, 1, 2, ...) then weigh 1/T each, not as much as one that stands for an epoch.
Pure numpy: the claims, the schedule stage's mu and L, and the figures call it alike.

    >>> checkpoint_weights([0.0, 0.0, 0.1, 0.5, 0.5])
    array([0.05, 0.05, 0.4 , 0.25, 0.25])
"""

from __future__ import annotations

import numpy as np


def checkpoint_weights(progress) -> np.ndarray:
    """Per row of a table (one or more rows per checkpoint, by their `progress`): its
    checkpoint's share of training, divided among that checkpoint's rows. They sum to 1 - p_0
    (1 where the first checkpoint is step 0)."""
    progress = np.asarray(progress, dtype=np.float64)
    points, row_point, rows = np.unique(progress, return_inverse=True, return_counts=True)
    shares = np.append(points[1:], 1.0) - points
    return (shares / rows)[row_point]


def weighted_mean(values, weights) -> float:
    values, weights = np.asarray(values, dtype=np.float64), np.asarray(weights, dtype=np.float64)
    return float(np.sum(values * weights) / np.sum(weights)) if len(values) else float("nan")


def weighted_median(values, weights) -> float:
    """The value below which half the weight lies (the inverted CDF, as the plain median of
    equal weights for an odd count)."""
    if not len(values):
        return float("nan")
    return float(np.quantile(values, 0.5, weights=weights, method="inverted_cdf"))
