"""The numeric claims of one run, each with its 95 % bootstrap interval (report/uncertainty.py).

    point, draws = run_statistics(geometry, run, ignore_last)
    point["median_gamma"], draws["median_gamma"]      # the value, and its [DRAWS] bootstrap draws

From the `sampled` minibatches of the geometry table:

    gamma_positive_share     share of gamma > 0 over the first 95 % of training (t/T < 0.95)
    median_gamma, median_z   medians over every sampled minibatch; mean_gamma their mean
    median_gamma_other       the controls' medians over the same minibatches: gamma against the
    median_gamma_origin      final point of the run differing only in its seed (NaN where there
                             is none), and against the origin
    rsi_max_factor           over the middle 80 % of training (0.1 <= t/T <= 0.9), the largest
                             factor between one checkpoint's median RSI and the median of those
                             medians (inf where one is not positive)
    eb_max_factor            the same for EB

From the directions the schedule stage takes eta* along (sampled minibatches for SGD, with weight
decay where the run has it; the optimizer's update otherwise) over all of training but its last
`ignore_last`, as schedule.json's `bound` has them:

    guarantee_mu             mu = min RSI
    guarantee_L              L = max EB
    guarantee_rate           1 - mu^2 / L^2, the per-step contraction of ||w - w*||^2 at the
                             step mu / L^2 (NaN where mu <= 0: no guarantee)
    rsi_positive_share       the share of those directions with RSI > 0
    guarantee_mu_robust      mu without the worst 1 % of directions: the 1 % quantile of RSI

The contrast, `median_gamma_random_labels`: the median gamma of the shuffled-label gradients (one
per checkpoint: its interval resamples checkpoints), NaN where the objective is deterministic.

And two flags of what the run can show: `deterministic` (every sampled minibatch gives the same
gradient at each checkpoint: no minibatch spread, no shuffled labels) and `middle_checkpoints`
(how many checkpoints the stability claim has to go on).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from nowrongturns.report.uncertainty import (
    DRAWS,
    SEED,
    identity_draw,
    interval,
    stratified_draws,
    weighted_mean,
    weighted_quantile,
)
from nowrongturns.schedule.stage import directions
from nowrongturns.shares import checkpoint_weights

FIRST = 0.95  # "the first 95 % of training"
MIDDLE = (0.1, 0.9)  # "the middle 80 %"
ROBUST = 0.01  # the robust mu leaves out the worst 1 % of directions
IGNORE_LAST = 0.05  # schedule.ignore_last's default, for a run without its schedule.json
SAMPLED_CLAIMS = [
    "gamma_positive_share",
    "median_gamma",
    "median_gamma_other",
    "median_gamma_origin",
    "median_z",
    "mean_gamma",
    "rsi_max_factor",
    "eb_max_factor",
]
GUARANTEE_CLAIMS = [
    "guarantee_mu",
    "guarantee_L",
    "guarantee_rate",
    "rsi_positive_share",
    "guarantee_mu_robust",
]
NUMERIC_CLAIMS = [*SAMPLED_CLAIMS, *GUARANTEE_CLAIMS, "median_gamma_random_labels"]


def _factor(medians: np.ndarray) -> np.ndarray:
    """[draws, checkpoints] -> [draws]: the largest factor between a checkpoint's median and the
    median of the medians, max(v/m, m/v); inf where one is not positive."""
    if medians.shape[-1] == 0:
        return np.full(medians.shape[0], np.nan)
    middle = np.median(medians, axis=-1, keepdims=True)
    positive = (medians > 0).all(-1) & (middle[..., 0] > 0)
    with np.errstate(invalid="ignore", divide="ignore"):
        factor = np.maximum(medians / middle, middle / medians).max(-1)
    return np.where(positive, factor, np.inf)


def _sampled_statistics(rows: pd.DataFrame, draws: np.ndarray, weights) -> dict[str, np.ndarray]:
    """Each sampled claim over the resampled rows `draws` [draws, n] of `rows` (sorted by step)."""
    drawn_weights = None if weights is None else weights[draws]

    def column(name):
        return rows[name].to_numpy(np.float64)[draws]

    progress = rows["progress"].to_numpy()
    early = progress < FIRST
    gamma = column("gamma")
    stats = {
        "gamma_positive_share": weighted_mean(
            (gamma[:, early] > 0).astype(np.float64),
            None if drawn_weights is None else drawn_weights[:, early],
        ),
        "mean_gamma": weighted_mean(gamma, drawn_weights),
        "median_gamma": weighted_quantile(gamma, drawn_weights, 0.5),
    }
    for name in ("gamma_other", "gamma_origin", "z"):
        stats[f"median_{name}"] = weighted_quantile(column(name), drawn_weights, 0.5)
    steps = rows["step"].to_numpy()
    middle = np.unique(steps[(progress >= MIDDLE[0]) & (progress <= MIDDLE[1])])
    for name in ("rsi", "eb"):
        values = column(name)
        medians = [
            weighted_quantile(
                values[:, steps == step],
                None if drawn_weights is None else drawn_weights[:, steps == step],
                0.5,
            )
            for step in middle
        ]
        stats[f"{name}_max_factor"] = _factor(np.stack(medians, -1) if medians else values[:, :0])
    return stats


def _guarantee_statistics(rsi: np.ndarray, eb: np.ndarray, weights) -> dict[str, np.ndarray]:
    """mu, L, the rate, the share of RSI > 0 and the robust mu over rows [draws, n]."""
    if rsi.shape[-1] == 0:
        nan = np.full(rsi.shape[0], np.nan)
        return dict.fromkeys(GUARANTEE_CLAIMS, nan)
    mu, lipschitz = rsi.min(-1), eb.max(-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        rate = np.where(mu > 0, 1 - mu**2 / lipschitz**2, np.nan)
    return {
        "guarantee_mu": mu,
        "guarantee_L": lipschitz,
        "guarantee_rate": rate,
        "rsi_positive_share": weighted_mean((rsi > 0).astype(np.float64), weights),
        "guarantee_mu_robust": weighted_quantile(rsi, weights, ROBUST),
    }


def _rows(geometry: pd.DataFrame, source: str) -> pd.DataFrame:
    rows = geometry[geometry["source"] == source]
    return rows.sort_values(["step", "sample"], kind="stable").reset_index(drop=True)


def is_deterministic(sampled: pd.DataFrame) -> bool:
    """Every sampled minibatch at a checkpoint gives the same gradient: a deterministic objective
    (or one example per minibatch drawn from one), with no spread to sample."""
    spread = sampled.groupby("step")["gamma"].agg(lambda g: g.max() - g.min())
    return bool((spread <= 1e-12).all()) and sampled.groupby("step").size().max() > 1


def run_statistics(
    geometry: pd.DataFrame,
    run: dict,
    ignore_last: float,
    weighted: bool = True,
    draws: int = DRAWS,
) -> tuple[dict, dict[str, np.ndarray]]:
    """(point values, bootstrap draws) of every numeric claim of one run (module docstring), and
    in the point values the flags `deterministic` and `middle_checkpoints`. `weighted`: each row
    weighs its checkpoint's share of training (shares.py), divided among that checkpoint's rows,
    as the schedule stage weighs them; False: every row alike."""
    sampled = _rows(geometry, "sampled")
    if sampled.empty:
        raise ValueError(f"run {geometry['run'].iloc[0]!r}: no sampled minibatches")
    deterministic = is_deterministic(sampled)
    rng = np.random.default_rng(SEED)
    row_weights = checkpoint_weights(sampled["progress"]) if weighted else None
    resampled = stratified_draws(sampled["step"].to_numpy(), draws, rng)
    point = _sampled_statistics(sampled, identity_draw(len(sampled)), row_weights)
    drawn = _sampled_statistics(sampled, resampled, row_weights)

    source, _, suffix = directions(run)
    steered = _rows(geometry, source)
    # Weighed over all its checkpoints, then cut, as schedule/bound.py's guarantee does.
    kept = (steered["progress"] <= 1 - ignore_last).to_numpy()
    steered_weights = checkpoint_weights(steered["progress"])[kept] if weighted else None
    steered = steered[kept].reset_index(drop=True)
    rsi, eb = (steered[f"{name}{suffix}"].to_numpy(np.float64) for name in ("rsi", "eb"))
    steered_draws = stratified_draws(steered["step"].to_numpy(), draws, rng)
    on_identity = identity_draw(len(steered))
    point |= _guarantee_statistics(rsi[on_identity], eb[on_identity], steered_weights)
    drawn |= _guarantee_statistics(
        rsi[steered_draws],
        eb[steered_draws],
        None if steered_weights is None else steered_weights[steered_draws],
    )
    # The contrast: the train batch's very inputs with shuffled labels, one row a checkpoint, so
    # its interval resamples checkpoints; undefined where the objective has no labels to shuffle.
    shuffled = geometry.loc[geometry["source"] == "random_labels", "gamma"].to_numpy(np.float64)
    if deterministic or not len(shuffled):
        shuffled = shuffled[:0]
    over_checkpoints = (rng.random((draws, len(shuffled))) * len(shuffled)).astype(np.int64)
    point["median_gamma_random_labels"] = weighted_quantile(shuffled[None, :], None, 0.5)
    drawn["median_gamma_random_labels"] = weighted_quantile(shuffled[over_checkpoints], None, 0.5)
    values = {name: float(value[0]) for name, value in point.items()}
    progress = sampled.drop_duplicates("step")["progress"]
    values["middle_checkpoints"] = int(progress.between(*MIDDLE).sum())
    values["deterministic"] = deterministic
    return values, drawn


def checkpoint_median_draws(
    geometry: pd.DataFrame, column: str, draws: int = DRAWS
) -> pd.DataFrame:
    """Per checkpoint, the median of `column` over the sampled minibatches, and [draws] bootstrap
    draws of it: a frame indexed by progress, column "median" and columns 0..draws-1."""
    sampled = _rows(geometry, "sampled")
    steps = sampled["step"].to_numpy()
    resampled = stratified_draws(steps, draws, np.random.default_rng(SEED))
    values = sampled[column].to_numpy(np.float64)
    drawn_values = values[resampled]
    progress = sampled.drop_duplicates("step").set_index("step")["progress"]
    rows = {}
    for step, at in progress.items():
        where = steps == step
        drawn = weighted_quantile(drawn_values[:, where], None, 0.5)
        rows[at] = np.r_[weighted_quantile(values[where][None, :], None, 0.5), drawn]
    return pd.DataFrame.from_dict(rows, orient="index", columns=["median", *range(draws)])


def with_intervals(values: dict, drawn: dict[str, np.ndarray]) -> dict:
    """The point values with `<claim>_low`, `<claim>_high` after each numeric claim."""
    row = {}
    for name, value in values.items():
        row[name] = value
        if name in drawn:
            row[f"{name}_low"], row[f"{name}_high"] = interval(drawn[name])
    return row
