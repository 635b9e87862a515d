"""Standard learning-rate schedule families, fitted to a measured eta* curve in log space.

    fit = fit_families(progress, log_eta, weights)    # every family, each at its best parameters
    best = choose(fit)                                 # the lowest BIC
    lrs = schedule_curve(best["family"], best["params"], np.arange(T) / T)

Each family is a shape on training progress p = t/T in [0, 1] times a peak. The warm-up is linear,
from `start` x peak at p = 0 to the peak at p = `warmup`; the decay runs from the peak at
`warmup` down to `end` x peak at p = `decay_end` (cosine or linear), or drops from the peak to
`end` x peak at `decay_end` (step); after `decay_end` the lr stays at `end` x peak. Fitting in log
space weighs a decade of eta* the same wherever it lies; the peak that fits best given the other
parameters is the weighted mean of log eta* - log shape, so the search runs over the others only.
"""

from __future__ import annotations

import math

import numpy as np

# Lowest start and end level searched, as a fraction of the peak: four decades below it.
LOWEST_LEVEL = 1e-4
FAMILIES = ("constant", "warmup_cosine", "warmup_linear", "warmup_step")


def _decay(family: str, done: np.ndarray) -> np.ndarray:
    """How far the decay has come down (0 at its start, 1 at its end), `done` its fraction."""
    if family == "warmup_cosine":
        return 0.5 * (1 - np.cos(math.pi * done))
    if family == "warmup_linear":
        return done
    if family == "warmup_step":
        return (done >= 1).astype(np.float64)
    raise ValueError(f"schedule family {family!r} is unknown (one of {', '.join(FAMILIES)})")


def shape(family: str, params: dict, progress: np.ndarray) -> np.ndarray:
    """The family's lr at each progress, as a fraction of its peak. The parameters may be
    arrays of one candidate each ([S, 1] against progress [N]: [S, N] shapes at once)."""
    progress = np.asarray(progress, dtype=np.float64)
    if family == "constant":
        return np.ones_like(progress)
    warmup, decay_end = params["warmup"], params["decay_end"]
    start, end = params["start"], params["end"]
    warming = np.greater(warmup, 0)
    rising = np.where(warming, start + (1 - start) * progress / np.where(warming, warmup, 1), 1)
    done = np.clip((progress - warmup) / np.maximum(decay_end - warmup, 1e-12), 0, 1)
    falling = 1 - (1 - end) * _decay(family, done)
    return np.where(progress < warmup, rising, falling)


def schedule_curve(family: str, params: dict, progress: np.ndarray) -> np.ndarray:
    return params["peak"] * shape(family, params, progress)


def _unpack(vector: np.ndarray) -> dict:
    """Search coordinates -> shape parameters: decay_end as a fraction of what follows the
    warm-up (so it is never before it), levels in log10."""
    warmup, decay_fraction, log_start, log_end = vector
    return {
        "warmup": warmup,
        "decay_end": warmup + decay_fraction * (1 - warmup),
        "start": 10.0**log_start,
        "end": 10.0**log_end,
    }


def _fit_one(family: str, progress, log_eta, weights) -> dict:
    def profiled(params: dict) -> tuple[np.ndarray, np.ndarray]:
        """(best log peak, weighted residual sum of squares) for these shape parameters, per
        candidate where they are arrays of candidates."""
        log_shape = np.log(shape(family, params, progress))
        log_peak = np.sum(weights * (log_eta - log_shape), axis=-1, keepdims=True)
        residual = np.sum(weights * (log_eta - log_peak - log_shape) ** 2, axis=-1)
        return log_peak[..., 0], residual

    if family == "constant":
        params = {}
    else:
        from scipy.optimize import differential_evolution  # slow to import; not for the CLI

        lowest = math.log10(LOWEST_LEVEL)
        bounds = [(0.0, 0.9), (0.0, 1.0), (lowest, 0.0), (lowest, 0.0)]
        # The whole population's residuals in one call ([4, S] candidates): a generation is a
        # few array operations instead of S calls of Python.
        search = differential_evolution(
            lambda candidates: profiled(_unpack(candidates[..., None]))[1],
            bounds,
            seed=0,
            tol=1e-8,
            polish=False,
            vectorized=True,
            updating="deferred",
        )
        params = {key: float(value) for key, value in _unpack(search.x).items()}
    log_peak, residual = (float(value) for value in profiled(params))
    spread = float(np.sum(weights * (log_eta - np.sum(weights * log_eta)) ** 2))
    count = 1 / np.sum(weights**2)  # the effective number of points (Kish), weights uneven
    return {
        "family": family,
        "params": {"peak": math.exp(log_peak), **params},
        "rmse_log10": math.sqrt(residual) / math.log(10),
        "r2_log": 1 - residual / spread if spread > 0 else 1.0,
        # Bayesian information criterion: fit quality, with a price on each free parameter.
        "bic": count * math.log(max(residual, 1e-300)) + (1 + len(params)) * math.log(count),
    }


def fit_families(progress, log_eta, weights, families=FAMILIES) -> dict[str, dict]:
    """Each family fitted to log eta* at `progress`; `weights` (summing to 1) per point."""
    progress, log_eta = np.asarray(progress, float), np.asarray(log_eta, float)
    weights = np.asarray(weights, float) / np.sum(weights)
    return {family: _fit_one(family, progress, log_eta, weights) for family in families}


def choose(fits: dict[str, dict]) -> dict:
    """The family with the lowest BIC."""
    return min(fits.values(), key=lambda fit: fit["bic"])
