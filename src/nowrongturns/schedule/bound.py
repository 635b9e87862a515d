"""The convergence bound: the distance to w* that the measured geometry predicts, step by step.

One step w+ = w - eta D gives exactly ||w+ - w*||^2 = ||w - w*||^2 (1 - 2 eta RSI + eta^2 EB^2)
(docs/quantities.md#rsi-eb-and-gamma), for D the direction the optimizer stepped in. Multiplying
those factors, with the learning rate actually used, from ||w_0 - w*|| predicts ||w_t - w*|| at
every step: exactly where every step was measured (dense mode, or checkpoints at every step), and
holding each checkpoint's RSI and EB until the next checkpoint elsewhere (column `measured` says
which).

The paper's guarantee: where RSI >= mu > 0 and EB <= L along the path, a constant step
mu / L^2 contracts ||w - w*||^2 by 1 - mu^2 / L^2 each step. mu and L are taken over the sampled
directions of the path but its last `ignore_last` fraction, where w* = w_T drives both to
extremes by construction (||w - w*|| -> 0).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from nowrongturns.shares import checkpoint_weights, weighted_mean


def bound_table(
    rows: pd.DataFrame, suffix: str, lrs: np.ndarray, total_steps: int, rate: float
) -> pd.DataFrame:
    """step 0..T: lr, rsi, eb (measured or held), factor, dist (where stored), dist_predicted and
    dist_guaranteed (the constant step mu / L^2 at the guaranteed `rate`). `rows`: one per
    measured step, of the direction the optimizer stepped along, its stats under `suffix`."""
    steps = np.arange(total_steps + 1)
    measured = rows.set_index("step")
    table = pd.DataFrame({"step": steps, "progress": steps / total_steps})
    table["lr"] = np.append(lrs, np.nan)
    table["measured"] = table["step"].isin(measured.index)
    for column in ("rsi", "eb"):
        values = measured[f"{column}{suffix}"].reindex(steps)
        table[column] = values.ffill().to_numpy()
    table["factor"] = 1 - 2 * table["lr"] * table["rsi"] + table["lr"] ** 2 * table["eb"] ** 2
    table["dist"] = measured["dist"].reindex(steps).to_numpy()
    table.loc[total_steps, "dist"] = 0.0  # w_T is w*
    start = table["dist"].iloc[0]
    products = np.concatenate([[1.0], np.cumprod(table["factor"].to_numpy()[:-1])])
    table["dist_predicted"] = start * np.sqrt(np.clip(products, 0, None))
    table["dist_guaranteed"] = start * rate ** (steps / 2)
    return table


def guarantee(sampled: pd.DataFrame, suffix: str, ignore_last: float) -> dict:
    """mu = min RSI, L = max EB over `sampled` directions with progress <= 1 - ignore_last, and
    what they guarantee: the step mu / L^2 and the per-step contraction of ||w - w*||^2. Extremes
    take no weights: a cadence in epochs (checkpoint.every_epochs) gives the runs of a batch-size
    ablation the same number of samples, so that none looks worse for having more."""
    kept_rows = (sampled["progress"] <= 1 - ignore_last).to_numpy()
    weights = checkpoint_weights(sampled["progress"])[kept_rows]
    kept = sampled[kept_rows]
    rsi, eb = kept[f"rsi{suffix}"], kept[f"eb{suffix}"]
    mu, lipschitz = float(rsi.min()), float(eb.max())
    holds = mu > 0
    return {
        "mu": mu,
        "L": lipschitz,
        "step": mu / lipschitz**2 if holds else float("nan"),
        # 1 - mu^2/L^2 per step on the squared distance; NaN where RSI <= 0 somewhere (no bound)
        "rate": 1 - mu**2 / lipschitz**2 if holds else float("nan"),
        # of training: each checkpoint's directions weigh the share of training it stands for
        "rsi_positive_fraction": weighted_mean(rsi > 0, weights),
        "ignore_last": ignore_last,
        "directions": int(len(kept)),
    }
