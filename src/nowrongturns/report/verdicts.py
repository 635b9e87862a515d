"""Per run and claim, a verdict a reader can check: holds / does not hold / not shown, decided by a
stated threshold on the claim's 95 % interval, or `undefined` where the run cannot show it.

    verdicts = run_verdicts(row)      # claim -> verdict, from one row of the claims table

A claim holds where its whole interval is on the right side of the threshold, does not hold where
its whole interval is on the wrong side, and is not shown where the interval straddles it. The
thresholds (THRESHOLDS) are ours where the paper gives no number; each says why.
"""

from __future__ import annotations

import numpy as np

HOLDS, FAILS, NOT_SHOWN = "holds", "does not hold", "not shown"
DETERMINISTIC = "undefined (deterministic objective)"
TOO_SHORT = "undefined (too few checkpoints)"
NO_ABLATION = "undefined (no batch-size ablation)"
NO_FIT = "undefined (no schedule fitted)"

POSITIVE_SHARE = 0.95  # of sampled gamma > 0 over the first 95 % of training
MIN_Z = 3.0  # z = gamma sqrt(d): a random direction's z is N(0, 1)
STABLE_FACTOR = 2.0  # RSI, EB within this factor of their median over the middle 80 %
MIN_MIDDLE_CHECKPOINTS = 5  # fewer: too short a run to say anything is stable
SHAPE_FACTOR = 2.0  # a warm-up starts, a decay ends, at most half the fitted peak

# Claim -> (the threshold, why it is that), as claims.html states them.
THRESHOLDS = {
    "no_wrong_turns": (
        f"at least {POSITIVE_SHARE:.0%} of sampled γ > 0 over the first 95 % of training "
        "(interval wholly above)",
        "the paper: γ > 0 along the path; the last 5 % is left out as w* = w_T makes the "
        "distance vanish there, and a few stray minibatches are not a turn",
    ),
    "above_noise": (
        f"median z ≥ {MIN_Z:g} and median γ above its shuffled-label contrast "
        "(intervals wholly above)",
        "a random direction's z is N(0, 1); a gradient of shuffled labels shows what γ a "
        "gradient of no signal has on the same path",
    ),
    "stable": (
        f"RSI and EB within a factor {STABLE_FACTOR:g} of their median over the middle 80 % "
        f"(interval of the largest factor wholly ≤ {STABLE_FACTOR:g}); at least "
        f"{MIN_MIDDLE_CHECKPOINTS} checkpoints there",
        "ours: the paper says 'stable' without a number; a factor 2 bounds the rate's loss",
    ),
    "guarantee": (
        "μ = min RSI > 0 over the path but its last part (its interval too); the robust μ "
        "leaves out the worst 1 %",
        "the paper's condition for linear convergence at rate 1 − μ²/L²",
    ),
    "batch_size": (
        "the interval of the difference of mean γ between each pair of neighbouring batch "
        "sizes above 0",
        "the paper: larger minibatches give larger γ (less sampling noise)",
    ),
    "schedule": (
        f"fitted η* shows a warm-up (starts at most 1/{SHAPE_FACTOR:g} of its peak) and a decay "
        f"(ends at most 1/{SHAPE_FACTOR:g} of its peak)",
        "the paper: η* looks like the schedules of practice, warm-up then decay",
    ),
}


def side(low: float, high: float, threshold: float, above: bool = True) -> str:
    """The verdict of an interval against a threshold: holds wholly above it (`above`), or wholly
    at or below it (not `above`)."""
    if np.isnan(low) or np.isnan(high):
        return NOT_SHOWN
    if above:
        return HOLDS if low > threshold else FAILS if high <= threshold else NOT_SHOWN
    return HOLDS if high <= threshold else FAILS if low > threshold else NOT_SHOWN


def both(*verdicts: str) -> str:
    """Two conditions together: fails if one fails, holds if both hold, else not shown."""
    if FAILS in verdicts:
        return FAILS
    return HOLDS if all(v == HOLDS for v in verdicts) else NOT_SHOWN


def run_verdicts(row) -> dict[str, str]:
    """Claim -> verdict for one row of the claims table (a Series or mapping of its columns); the
    batch-size claim is the ablation's, not a run's (batch_size_verdict)."""
    verdicts = {
        "no_wrong_turns": side(
            row["gamma_positive_share_low"], row["gamma_positive_share_high"], POSITIVE_SHARE
        )
    }
    if row["deterministic"]:
        verdicts["no_wrong_turns"] = (
            HOLDS if row["gamma_positive_share"] >= POSITIVE_SHARE else FAILS
        )
        verdicts["above_noise"] = DETERMINISTIC
    else:
        contrast = row["median_gamma_random_labels"]  # NaN where that source was off
        verdicts["above_noise"] = both(
            side(row["median_z_low"], row["median_z_high"], MIN_Z),
            *(
                []
                if np.isnan(contrast)
                else [
                    side(
                        row["median_gamma_low"] - contrast, row["median_gamma_high"] - contrast, 0.0
                    )
                ]
            ),
        )
    if row["middle_checkpoints"] < MIN_MIDDLE_CHECKPOINTS:
        verdicts["stable"] = TOO_SHORT
    else:
        verdicts["stable"] = both(
            *(
                side(
                    row[f"{name}_max_factor_low"],
                    row[f"{name}_max_factor_high"],
                    STABLE_FACTOR,
                    False,
                )
                for name in ("rsi", "eb")
            )
        )
    verdicts["guarantee"] = side(row["guarantee_mu_low"], row["guarantee_mu_high"], 0.0)
    warmup, decay = row.get("schedule_warmup"), row.get("schedule_decay")
    if warmup is None or (isinstance(warmup, float) and np.isnan(warmup)):
        verdicts["schedule"] = NO_FIT
    else:
        verdicts["schedule"] = HOLDS if warmup and decay else FAILS
    return verdicts


def batch_size_verdict(increases: list[tuple[float, float]]) -> str:
    """The ablation's verdict from the intervals of its neighbouring differences (a larger batch
    size's mean gamma minus the next smaller's): holds where every one is wholly above 0, does
    not hold where one is wholly below, else not shown."""
    if not increases:
        return NO_ABLATION
    verdicts = [side(low, high, 0.0) for low, high in increases]
    if any(high < 0 for _, high in increases):
        return FAILS
    return HOLDS if all(v == HOLDS for v in verdicts) else NOT_SHOWN
