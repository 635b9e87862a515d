"""claims.html's first table: each claim of the paper, its threshold and why, what our runs show
(values with their 95 % intervals in brackets) and a verdict over the runs.

    statements = claim_statements(claims_table(...), config)

A run where a claim is undefined (a deterministic objective has no minibatch spread and no labels
to shuffle; a run with too few checkpoints has no stability to measure) is named as such and left
out of the ranges quoted.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from nowrongturns.config import ablation_levels, format_value
from nowrongturns.report.formatting import format_share
from nowrongturns.report.verdicts import FAILS, HOLDS, NO_ABLATION, NOT_SHOWN, THRESHOLDS

COLUMNS = ["claim", "the paper (in our words)", "threshold (why)", "our runs", "verdict"]


def with_interval(row, column: str, fmt: str = "{:.3f}") -> str:
    """`value [low, high]`, the value alone where it has no interval, NA where it has none."""
    if np.isnan(row[column]):
        return "NA"
    value = fmt.format(row[column])
    low, high = row.get(f"{column}_low", np.nan), row.get(f"{column}_high", np.nan)
    if np.isnan(low) or np.isnan(high):
        return value
    return f"{value} [{fmt.format(low)}, {fmt.format(high)}]"


def share_with_interval(row, column: str) -> str:
    return (
        f"{format_share(row[column])} [{format_share(row[f'{column}_low'])}, "
        f"{format_share(row[f'{column}_high'])}]"
    )


def tally(table: pd.DataFrame, claim: str) -> str:
    """The verdict over the runs: does not hold where one run's does not, holds where every run
    where the claim is defined holds, else not shown; then which runs gave which."""
    verdicts = table[f"verdict_{claim}"]
    defined = verdicts[~verdicts.str.startswith("undefined")]
    if defined.empty:
        overall = "undefined"
    elif (defined == FAILS).any():
        overall = FAILS
    elif (defined == HOLDS).all():
        overall = HOLDS
    else:
        overall = NOT_SHOWN
    groups = verdicts.groupby(verdicts, sort=False).groups
    detail = "; ".join(f"{verdict}: {', '.join(runs)}" for verdict, runs in groups.items())
    return f"{overall} ({detail})"


def _range(table: pd.DataFrame, column: str, fmt: str = "{:.3f}") -> str:
    """From the lowest to the highest value of `column` among `table`'s runs, with intervals."""
    if table[column].isna().all():
        return "not measured"
    low, high = table[column].idxmin(), table[column].idxmax()
    return (
        f"from {with_interval(table.loc[low], column, fmt)} ({low}) "
        f"to {with_interval(table.loc[high], column, fmt)} ({high})"
    )


def _defined(table: pd.DataFrame, claim: str) -> pd.DataFrame:
    return table[~table[f"verdict_{claim}"].str.startswith("undefined")]


def _wrong_turns(table: pd.DataFrame) -> str:
    turns = table[table["gamma_positive_share"] < 1]
    others = "; ".join(
        f"{run} {share_with_interval(row, 'gamma_positive_share')}" for run, row in turns.iterrows()
    )
    return (
        f"sampled γ > 0 over the first 95 % of training for every sampled gradient of "
        f"{len(table) - len(turns)} of {len(table)} runs"
        + (f"; in the others: {others}" if others else "")
        + "."
    )


def _above_noise(table: pd.DataFrame) -> str:
    shown = table[table["verdict_above_noise"] == HOLDS]
    text = (
        f"where it holds, median γ {_range(shown, 'median_gamma')}, median z "
        f"{_range(shown, 'median_z', '{:.1f}')}"
        if len(shown)
        else "in no run"
    )
    unclear = _defined(table, "above_noise").drop(shown.index)
    if len(unclear):
        text += "; elsewhere median γ, its shuffled-label contrast and z: " + "; ".join(
            f"{run} {with_interval(row, 'median_gamma')}, "
            + (
                f"{with_interval(row, 'median_gamma_random_labels')}"
                if np.isfinite(row["median_gamma_random_labels"])
                else "no shuffled labels measured"
            )
            + f", {with_interval(row, 'median_z', '{:.1f}')}"
            for run, row in unclear.iterrows()
        )
    return text + "."


def _stability(table: pd.DataFrame) -> str:
    defined = _defined(table, "stable")
    return (
        "largest factor from the median over the middle 80 %, RSI / EB: "
        + "; ".join(
            f"{run} {with_interval(row, 'rsi_max_factor', '{:.2f}')} / "
            f"{with_interval(row, 'eb_max_factor', '{:.2f}')}"
            for run, row in defined.iterrows()
        )
        + "."
    )


def _guarantee(table: pd.DataFrame) -> str:
    return (
        "μ / L / rate 1 − μ²/L² / RSI > 0 / robust μ (without the worst 1 %): "
        + "; ".join(
            f"{run} {with_interval(row, 'guarantee_mu', '{:.3g}')} / "
            f"{with_interval(row, 'guarantee_L', '{:.3g}')} / "
            f"{with_interval(row, 'guarantee_rate', '{:.4g}')} / "
            f"{share_with_interval(row, 'rsi_positive_share')} / "
            f"{with_interval(row, 'guarantee_mu_robust', '{:.3g}')}"
            for run, row in table.iterrows()
        )
        + "."
    )


def _batch_size(table: pd.DataFrame, config: dict) -> str:
    levels = ablation_levels(config).get("batch_size", [])
    if len(levels) < 2:
        return "no batch_size ablation in this config."
    means = "; ".join(
        f"{format_value(value)} ({len(runs)} seed{'s' if len(runs) > 1 else ''}): "
        f"{with_interval(table.loc[runs[0]], 'batch_size_mean_gamma')}"
        for value, runs in levels
    )
    steps = "; ".join(
        f"{format_value(lower)} → {format_value(value)}: "
        f"{with_interval(table.loc[runs[0]], 'batch_size_gamma_increase', '{:+.3f}')}"
        for (lower, _), (value, runs) in zip(levels, levels[1:])
    )
    verdict = table.loc[levels[0][1][0], "verdict_batch_size"]
    conclusion = {
        HOLDS: "γ grows with batch size",
        FAILS: "γ falls between some neighbouring batch sizes",
        NOT_SHOWN: "not shown: an interval of a difference includes 0",
    }.get(verdict, verdict)
    return f"mean γ by batch size: {means}; differences: {steps}; {conclusion}."


def _schedule(table: pd.DataFrame) -> str:
    fitted = table.dropna(subset=["schedule_family"])
    if fitted.empty:
        return "no family fitted yet (schedule.json has no `family`)."
    return (
        "; ".join(
            f"{run} {row.schedule_family} (warm-up {'yes' if row.schedule_warmup else 'no'}, "
            f"decay {'yes' if row.schedule_decay else 'no'}, fitted peak "
            f"{row.schedule_peak_over_lr:.2g} × the lr used)"
            for run, row in fitted.iterrows()
        )
        + "."
    )


def _controls(table: pd.DataFrame) -> str:
    """Median gamma beside its controls for the runs with a seed sibling; the origin's range."""
    paired = table.dropna(subset=["median_gamma_other"])
    columns = ["median_gamma", "median_gamma_other", "median_gamma_origin"]
    siblings = "; ".join(
        f"{run} " + " / ".join(with_interval(row, column) for column in columns)
        for run, row in paired.iterrows()
    )
    origin = f"median γ_origin {_range(table, 'median_gamma_origin')}."
    if paired.empty:
        return "no run differs from another in its seed alone (no γ_other); " + origin
    return f"median γ / γ_other / γ_origin: {siblings}; over all runs, {origin}"


def _straight_path(table: pd.DataFrame) -> str:
    """The runs whose every segment to w* descends, and the others' shares and largest rises."""
    bumpy = table[table["monotone_share"] < 1]
    others = "; in the others: " + ", ".join(
        f"{run} {format_share(row.monotone_share)} (largest rise {row.largest_bump:.2g}, "
        f"{row.largest_bump_relative:.1%} of its segment's starting loss)"
        for run, row in bumpy.iterrows()
    )
    return (
        f"monotone at every measured checkpoint in {len(table) - len(bumpy)} of {len(table)} "
        f"runs" + (others if len(bumpy) else "") + "."
    )


def _threshold(claim: str) -> str:
    threshold, why = THRESHOLDS[claim]
    return f"{threshold} ({why})"


def claim_statements(table: pd.DataFrame, config: dict) -> pd.DataFrame:
    """Each claim of the paper beside its threshold, what the runs of `table` show, in numbers,
    and the verdict over them."""
    no_verdict = "— (beyond the paper: no threshold)"
    batch = table["verdict_batch_size"]
    batch_verdict = (
        batch[batch != NO_ABLATION].iloc[0] if (batch != NO_ABLATION).any() else NO_ABLATION
    )
    rows = [
        (
            "no_wrong_turns",
            "No wrong turns: sampled gradients point towards the final point (γ > 0) "
            "along the whole path.",
            _threshold("no_wrong_turns"),
            _wrong_turns(table),
            tally(table, "no_wrong_turns"),
        ),
        (
            "above_noise",
            "γ is small (a cosine in many dimensions) but far above noise: z = γ √d far above "
            "the 1 of a random direction.",
            _threshold("above_noise"),
            _above_noise(table),
            tally(table, "above_noise"),
        ),
        (
            "stable",
            "RSI and EB are stable during most of training (enough for linear convergence).",
            _threshold("stable"),
            _stability(table),
            tally(table, "stable"),
        ),
        (
            "guarantee",
            "With RSI ≥ μ > 0 and EB ≤ L along the path, SGD at the step μ/L² converges "
            "linearly: ‖w − w*‖² shrinks by 1 − μ²/L² each step.",
            _threshold("guarantee"),
            _guarantee(table),
            tally(table, "guarantee"),
        ),
        (
            "batch_size",
            "Larger minibatches give sampled gradients a larger γ (less sampling noise).",
            _threshold("batch_size"),
            _batch_size(table, config),
            batch_verdict,
        ),
        (
            "schedule",
            "The locally optimal step η* = RSI / EB² prescribes schedules like those of practice "
            "(warm-up, then decay).",
            _threshold("schedule"),
            _schedule(table),
            tally(table, "schedule"),
        ),
        (
            "controls",
            "Beyond the paper, the controls: is it this run's own final point? Sampled gradients "
            "against another seed's final point (γ_other) and against the origin (γ_origin: "
            "does the step merely shrink the weights?).",
            no_verdict,
            _controls(table),
            no_verdict,
        ),
    ]
    if "monotone_share" in table:
        rows.append(
            (
                "straight_path",
                "Beyond the paper, no wrong turns in the most literal sense "
                "(Goodfellow et al. 2015; Lucas et al. 2021): the loss falls monotonically along "
                "the straight segment from each checkpoint to w*.",
                no_verdict,
                _straight_path(table),
                no_verdict,
            )
        )
    return pd.DataFrame(rows, columns=COLUMNS)
