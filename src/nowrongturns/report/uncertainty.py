"""95 % bootstrap intervals for the claims: minibatches resampled within each checkpoint, and seeds
resampled where a level of a factor has several.

    draws = stratified_draws(steps, DRAWS, rng)            # [draws, n] row indices
    values = gamma[draws]                                   # each draw's resampled rows
    low, high = interval(weighted_quantile(values, weights[draws], 0.5))

A checkpoint keeps its number of rows in every draw (row i of a draw comes from row i's
checkpoint), so a statistic over a range of checkpoints (the first 95 % of training) is a fixed
set of positions in every draw. Rows may carry weights (the share of training a checkpoint
stands for); unweighted is every weight 1. Everything is vectorized over the draws: 2,000 draws
of a run's few thousand rows cost milliseconds.
"""

from __future__ import annotations

import numpy as np

LEVEL = 0.95
DRAWS = 2000
SEED = 0  # the claims are a function of their inputs: the same intervals every time


def stratified_draws(strata: np.ndarray, draws: int, rng: np.random.Generator) -> np.ndarray:
    """[draws, n] row indices: each row replaced by a row drawn uniformly, with replacement, from
    its own stratum (checkpoint); positions keep their stratum."""
    strata = np.asarray(strata)
    count = len(strata)
    order = np.argsort(strata, kind="stable")
    starts = np.flatnonzero(np.r_[True, strata[order][1:] != strata[order][:-1]])
    sizes = np.diff(np.r_[starts, count])
    first, size = np.repeat(starts, sizes), np.repeat(sizes, sizes)
    picks = first + (rng.random((draws, count)) * size).astype(np.int64)
    indices = np.empty((draws, count), dtype=np.int64)
    indices[:, order] = order[picks]
    return indices


def identity_draw(count: int) -> np.ndarray:
    """The rows as they are, as one draw: the point estimate through the same code."""
    return np.arange(count)[None, :]


def weighted_quantile(values: np.ndarray, weights: np.ndarray | None, q: float) -> np.ndarray:
    """The q-quantile along the last axis, weighted: the i-th smallest value sits at cumulative
    position (S_i - w_i / 2) / S_n, S the running sum of the sorted weights, and the quantile
    interpolates linearly between positions (with equal weights numpy's `hazen` method, whose
    median is the usual one). NaN where a row has a NaN or no value."""
    values = np.asarray(values, dtype=np.float64)
    if values.shape[-1] == 0:
        return np.full(values.shape[:-1], np.nan)
    weights = np.ones_like(values) if weights is None else np.broadcast_to(weights, values.shape)
    order = np.argsort(values, axis=-1)
    sorted_values = np.take_along_axis(values, order, -1)
    sorted_weights = np.take_along_axis(weights, order, -1)
    cumulative = np.cumsum(sorted_weights, -1)
    position = (cumulative - sorted_weights / 2) / cumulative[..., -1:]
    upper = np.minimum((position <= q).sum(-1, keepdims=True), values.shape[-1] - 1)
    lower = np.maximum(upper - 1, 0)
    at = [
        np.take_along_axis(a, i, -1)[..., 0]
        for a in (position, sorted_values)
        for i in (lower, upper)
    ]
    p_low, p_high, v_low, v_high = at
    with np.errstate(invalid="ignore", divide="ignore"):
        fraction = np.where(p_high > p_low, np.clip((q - p_low) / (p_high - p_low), 0, 1), 0.0)
    result = v_low + fraction * (v_high - v_low)
    return np.where(np.isnan(values).any(-1), np.nan, result)


def weighted_mean(values: np.ndarray, weights: np.ndarray | None) -> np.ndarray:
    """The mean along the last axis, weighted (NaN where there is no value)."""
    values = np.asarray(values, dtype=np.float64)
    if weights is None:
        return values.mean(-1) if values.shape[-1] else np.full(values.shape[:-1], np.nan)
    weights = np.broadcast_to(weights, values.shape)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (values * weights).sum(-1) / weights.sum(-1)


def interval(draws: np.ndarray, level: float = LEVEL) -> tuple[float, float]:
    """The percentile interval of a statistic's bootstrap draws; NaN where every draw is NaN
    (inf kept: a factor of inf is a value)."""
    draws = np.asarray(draws, dtype=np.float64)
    kept = draws[~np.isnan(draws)]
    if not len(kept):
        return np.nan, np.nan
    tail = (1 - level) / 2 * 100
    # The nearest draw, not an interpolation: a factor's draws may be inf.
    low, high = np.percentile(kept, [tail, 100 - tail], method="nearest")
    return float(low), float(high)


def seed_draws(run_draws: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A level's statistic over its seeds: `run_draws` [seeds, draws, ...] holds each seed's own
    bootstrap draws (of the minibatches); each draw resamples the seeds with replacement and
    averages the drawn seeds' values in that draw. One seed: its own draws."""
    seeds, draws = run_draws.shape[:2]
    if seeds == 1:
        return run_draws[0]
    picks = rng.integers(0, seeds, (draws, seeds))
    return run_draws[picks, np.arange(draws)[:, None]].mean(1)
