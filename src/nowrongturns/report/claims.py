"""The claims table: the paper's headline claims, checked on each run's geometry table.

    nwt claims --config config.json --csv results/claims.csv --html results/claims.html \
        --geometry results/runs/*/geometry.parquet --schedules results/runs/*/schedule.json

Per run (one row of claims.csv), from the `sampled` minibatches of its geometry table:

    gamma_positive_share     share of gamma > 0 over the first 95 % of training (t/T < 0.95)
    median_gamma, median_z   medians over every sampled minibatch; mean_gamma their mean
    median_gamma_other       the controls' medians over the same minibatches: gamma against the
    median_gamma_origin      final point of the run differing only in its seed (NaN where there
                             is none), and against the origin (DESIGN section 9)
    rsi_max_factor           over the middle 80 % of training (0.1 <= t/T <= 0.9), the largest
                             factor between one checkpoint's median RSI and the median of those
                             medians (inf where one is not positive); rsi_within_2x: at most 2
    eb_max_factor, eb_within_2x        the same for EB
    batch_size_gamma_rank    runs at a level of the batch_size ablation: the rank of that level's
                             mean gamma (averaged over its seeds) among the levels, 1 the lowest
    schedule_family          the family fitted to the derived schedule (schedule.json `family`)
    monotone_share           where the interpolation analysis is on (beyond the paper): the share
    largest_bump,            of measured checkpoints whose straight segment to w* the loss
    largest_bump_relative    descends all the way, and the largest rise of the loss along any,
                             absolute and relative to that segment's starting loss
                             (analyses/interpolation.py monotone_summary)

claims.html states each claim of the paper beside what the runs show, then the table.
`--config` is the workflow config with its defaults filled (inline JSON, or a YAML/JSON file).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from nowrongturns.analyses.interpolation import monotone_summary
from nowrongturns.config import ablation_levels, expand_runs, format_value
from nowrongturns.files import written
from nowrongturns.report.formatting import format_share
from nowrongturns.tables import TableError, read_json

FIRST = 0.95  # "the first 95 % of training"
MIDDLE = (0.1, 0.9)  # "the middle 80 %"
SETTINGS = ("task", "model", "optimizer", "batch_size", "lr", "seed")
# Claims column -> monotone_summary key, where the interpolation analysis is on.
STRAIGHT_PATH = {
    "monotone_share": "monotone",
    "largest_bump": "largest_bump",
    "largest_bump_relative": "largest_bump_relative",
}


def check_tables(tables: dict[str, pd.DataFrame], runs, kind: str = "geometry") -> None:
    """Fail naming every run of `runs` that has no table (a geometry table, or another `kind`)."""
    missing = sorted(set(runs) - set(tables))
    if missing:
        raise ValueError(f"no {kind} table of run {missing}")


def max_factor(medians: pd.Series) -> float:
    """The largest factor between a value and the median of the values: max(v/m, m/v)."""
    middle = medians.median()
    if not (medians > 0).all() or middle <= 0:
        return np.inf
    return float(max((medians / middle).max(), (middle / medians).max()))


def run_claims(geometry: pd.DataFrame) -> dict:
    """The claims columns of one run's geometry table (see the module docstring)."""
    sampled = geometry[geometry["source"] == "sampled"]
    if sampled.empty:
        raise ValueError(f"run {geometry['run'].iloc[0]!r}: no sampled minibatches")
    early = sampled[sampled["progress"] < FIRST]
    middle = sampled[sampled["progress"].between(*MIDDLE)].groupby("step")[["rsi", "eb"]].median()
    row = {
        "gamma_positive_share": float((early["gamma"] > 0).mean()),
        "median_gamma": float(sampled["gamma"].median()),
        "median_gamma_other": float(sampled["gamma_other"].median()),
        "median_gamma_origin": float(sampled["gamma_origin"].median()),
        "median_z": float(sampled["z"].median()),
        "mean_gamma": float(sampled["gamma"].mean()),
    }
    for column in ("rsi", "eb"):
        factor = max_factor(middle[column]) if len(middle) else np.nan
        row[f"{column}_max_factor"] = factor
        row[f"{column}_within_2x"] = bool(factor <= 2)
    return row


def batch_size_levels(table: pd.DataFrame, config: dict) -> list[tuple[object, list[str], float]]:
    """(batch size, its runs, their mean gamma) for each level of the batch_size ablation."""
    return [
        (value, runs, table.loc[runs, "mean_gamma"].mean())
        for value, runs in ablation_levels(config).get("batch_size", [])
    ]


def batch_size_ranks(table: pd.DataFrame, config: dict) -> pd.Series:
    """Run -> the rank (1 the lowest) of its batch-size level's mean gamma; NA off that factor."""
    ranks = pd.Series(pd.NA, index=table.index, dtype="Int64")
    levels = batch_size_levels(table, config)
    order = pd.Series([gamma for _, _, gamma in levels]).rank(method="min").astype(int)
    for (_, runs, _), rank in zip(levels, order):
        ranks[runs] = rank
    return ranks


def claims_table(
    tables: dict[str, pd.DataFrame],
    schedules: dict[str, dict],
    config: dict,
    interpolations: dict[str, pd.DataFrame] | None = None,
) -> pd.DataFrame:
    """One row per run of the config, in its order (see the module docstring); `interpolations`
    (run name -> interpolation table) where that analysis is on."""
    runs = expand_runs(config)
    check_tables(tables, runs)
    rows = {
        name: {key: run[key] for key in SETTINGS} | run_claims(tables[name])
        for name, run in runs.items()
    }
    table = pd.DataFrame.from_dict(rows, orient="index")
    table.index.name = "run"
    table["batch_size_gamma_rank"] = batch_size_ranks(table, config)
    # The schedule stage writes `family` once it fits one; until then the column stays empty.
    table["schedule_family"] = [schedules.get(run, {}).get("family") for run in table.index]
    if interpolations:
        check_tables(interpolations, runs, "interpolation")
        straight = {run: monotone_summary(interpolations[run]) for run in table.index}
        for column, key in STRAIGHT_PATH.items():
            table[column] = [straight[run][key] for run in table.index]
    return table


def _listed(table: pd.DataFrame, column: str, fmt, before: str = "", after: str = "") -> str:
    """Each run with its value (`fmt`: a format string or a function), between `before` and
    `after`; "" where the table has no rows."""
    if table.empty:
        return ""
    show = fmt.format if isinstance(fmt, str) else fmt
    return before + ", ".join(f"{run} {show(v)}" for run, v in table[column].items()) + after


def _range(table: pd.DataFrame, column: str, fmt: str) -> str:
    if table[column].isna().all():
        return "not measured"
    low, high = table[column].idxmin(), table[column].idxmax()
    return (
        f"from {fmt.format(table.loc[low, column])} ({low}) "
        f"to {fmt.format(table.loc[high, column])} ({high})"
    )


def _controls(table: pd.DataFrame) -> str:
    """Median gamma beside its controls for the runs with a seed sibling; the origin's range."""
    paired = table.dropna(subset=["median_gamma_other"])
    columns = ["median_gamma", "median_gamma_other", "median_gamma_origin"]
    siblings = "; ".join(
        f"{run} " + " / ".join(f"{value:.3f}" for value in row)
        for run, row in paired[columns].iterrows()
    )
    origin = f"median γ_origin {_range(table, 'median_gamma_origin', '{:.3f}')}."
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


def claim_statements(table: pd.DataFrame, config: dict) -> pd.DataFrame:
    """Each claim of the paper beside what the runs of `table` show, in numbers."""
    runs = len(table)
    turns = table[table["gamma_positive_share"] < 1]
    stability = []
    for column, name in (("rsi", "RSI"), ("eb", "EB")):
        outside = table[~table[f"{column}_within_2x"]]
        stability.append(
            f"{name} in {runs - len(outside)} of {runs} runs"
            + _listed(outside, f"{column}_max_factor", "{:.1f}x", " (not: ", ")")
        )
    by_size = [(value, gamma) for value, _, gamma in batch_size_levels(table, config)]
    increasing = all(low < high for (_, low), (_, high) in zip(by_size, by_size[1:]))
    families = table.dropna(subset=["schedule_family"])
    rows = [
        (
            "No wrong turns: sampled gradients point towards the final point (γ > 0) "
            "along the whole path.",
            f"sampled γ > 0 over the first 95 % of training in every minibatch of "
            f"{runs - len(turns)} of {runs} runs"
            + _listed(turns, "gamma_positive_share", format_share, "; in the others: ")
            + ".",
        ),
        (
            "γ is small (a cosine in many dimensions) but far above noise: z = γ √d far above "
            "the 1 of a random direction.",
            f"median γ {_range(table, 'median_gamma', '{:.3f}')}; "
            f"median z {_range(table, 'median_z', '{:.1f}')}.",
        ),
        (
            "RSI and EB are stable during most of training (enough for linear convergence).",
            "within a factor of 2 of their median over the middle 80 % of training: "
            + "; ".join(stability)
            + ".",
        ),
        (
            "Larger minibatches give sampled gradients a larger γ (less sampling noise).",
            "mean γ by batch size: "
            + ", ".join(f"{format_value(v)}: {g:.3f}" for v, g in by_size)
            + ("; it increases with batch size." if increasing else "; not increasing.")
            if len(by_size) > 1
            else "no batch_size ablation in this config.",
        ),
        (
            "The locally optimal step η* = RSI / EB² prescribes schedules like those of practice "
            "(warm-up, then decay).",
            _listed(families, "schedule_family", "{}", "fitted family: ", ".")
            or "no family fitted yet (schedule.json has no `family`).",
        ),
        (
            "Beyond the paper, the controls: is it this run's own final point? Sampled gradients "
            "against another seed's final point (γ_other) and against the origin (γ_origin: "
            "does the step merely shrink the weights?).",
            _controls(table),
        ),
    ]
    if "monotone_share" in table:
        rows.append(
            (
                "Beyond the paper, no wrong turns in the most literal sense "
                "(Goodfellow et al. 2015; Lucas et al. 2021): the loss falls monotonically along "
                "the straight segment from each checkpoint to w*.",
                _straight_path(table),
            )
        )
    return pd.DataFrame(rows, columns=["the paper (in our words)", "our runs"])


def write_claims(
    tables: dict[str, pd.DataFrame],
    schedule_paths: list[str],
    config: dict,
    out_csv: str,
    out_html: str,
    interpolations: dict[str, pd.DataFrame] | None = None,
) -> pd.DataFrame:
    """claims.csv and claims.html from each run's geometry table (run name -> table), and its
    interpolation table where that analysis is on."""
    schedules = {}
    for path in schedule_paths:
        document = read_json(path, "schedule")
        if not isinstance(document.get("run"), str):
            raise TableError(f"{path}: the schedule names no run (field 'run')")
        schedules[document["run"]] = document
    table = claims_table(tables, schedules, config, interpolations)
    with written(out_csv) as tmp:
        table.to_csv(tmp)
    statements = claim_statements(table, config)
    page = (
        "<!doctype html>\n<html><head><meta charset='utf-8'><title>Claims</title>"
        "<style>body{font-family:sans-serif;margin:1em}table{border-collapse:collapse;"
        "font-size:0.9em}td,th{border:1px solid #bbb;padding:0.3em 0.5em;vertical-align:top}"
        "</style></head><body>\n<h2>The paper's claims beside our runs</h2>\n"
        + statements.to_html(index=False, border=0, justify="left")
        + "\n<h2>Per run (claims.csv)</h2>\n"
        + table.reset_index().to_html(
            index=False, border=0, justify="left", float_format="{:.4g}".format, na_rep="NA"
        )
        + "\n</body></html>\n"
    )
    with written(out_html) as tmp:
        tmp.write_text(page)
    return table
