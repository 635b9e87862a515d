"""The claims table: the paper's headline claims, checked on each run's geometry table.

    nwt claims --config config.json --csv results/claims.csv --html results/claims.html \
        --geometry results/runs/*/geometry.parquet --schedules results/runs/*/schedule.json

Per run (one row of claims.csv): its settings; every numeric claim of report/run_statistics.py
(the sampled minibatches' gamma, z and controls, the stability factors, the guarantee mu, L, rate,
share of RSI > 0 and robust mu, the shuffled-label contrast), each `X` with `X_low`, `X_high`, its
95 % bootstrap interval (minibatches resampled within checkpoints), each checkpoint weighing the
share of training it stands for (shares.py); the flags `deterministic` and
`middle_checkpoints`; and

    batch_size_mean_gamma    runs at a level of the batch_size ablation: that level's mean gamma,
                             averaged over its seeds (interval: seeds and minibatches resampled)
    batch_size_gamma_increase     that level's mean gamma minus the next smaller level's
    schedule_family          the family fitted to the derived schedule (schedule.json `family`)
    schedule_warmup, schedule_decay, schedule_peak_over_lr   the fitted shape: a warm-up, a
                             decay (report/verdicts.py SHAPE_FACTOR), the fitted peak / the lr used
    monotone_share           where the interpolation analysis is on (beyond the paper): the share
    largest_bump,            of measured checkpoints whose straight segment to w* the loss
    largest_bump_relative    descends all the way, and the largest rise of the loss along any,
                             absolute and relative to that segment's starting loss
                             (analyses/interpolation.py monotone_summary; a fixed evaluation set,
                             no minibatches to resample: no interval)
    verdict_<claim>          holds / does not hold / not shown / undefined (why), report/verdicts.py

claims.html states each claim of the paper beside what the runs show, then the table.
`--config` is the workflow config with its defaults filled (inline JSON, or a YAML/JSON file).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from nowrongturns.analyses.interpolation import monotone_summary
from nowrongturns.config import ablation_levels, expand_runs
from nowrongturns.files import written
from nowrongturns.report.run_statistics import (
    FIRST,
    IGNORE_LAST,
    MIDDLE,
    run_statistics,
    with_intervals,
)
from nowrongturns.report.statements import claim_statements
from nowrongturns.report.uncertainty import SEED, interval, seed_draws
from nowrongturns.report.verdicts import (
    NO_ABLATION,
    SHAPE_FACTOR,
    batch_size_verdict,
    run_verdicts,
)
from nowrongturns.tables import TableError, read_json

SETTINGS = ("task", "model", "optimizer", "batch_size", "lr", "seed")
# Claims column -> monotone_summary key, where the interpolation analysis is on.
STRAIGHT_PATH = {
    "monotone_share": "monotone",
    "largest_bump": "largest_bump",
    "largest_bump_relative": "largest_bump_relative",
}
__all__ = ["FIRST", "MIDDLE", "claim_statements", "claims_table", "write_claims"]


def check_tables(tables: dict[str, pd.DataFrame], runs, kind: str = "geometry") -> None:
    """Fail naming every run of `runs` that has no table (a geometry table, or another `kind`)."""
    missing = sorted(set(runs) - set(tables))
    if missing:
        raise ValueError(f"no {kind} table of run {missing}")


def batch_size_columns(table: pd.DataFrame, draws: dict, config: dict) -> pd.DataFrame:
    """batch_size_mean_gamma and batch_size_gamma_increase with their intervals, and
    verdict_batch_size, for the runs at a level of the batch_size ablation (NaN elsewhere).
    `draws`: run -> its bootstrap draws of mean_gamma."""
    columns = pd.DataFrame(index=table.index, dtype=float)
    for name in ("batch_size_mean_gamma", "batch_size_gamma_increase"):
        for suffix in ("", "_low", "_high"):
            columns[name + suffix] = np.nan
    levels = ablation_levels(config).get("batch_size", [])
    rng = np.random.default_rng(SEED)
    previous, increases = None, []
    for _, runs in levels:
        level = seed_draws(np.stack([draws[run] for run in runs]), rng)
        columns.loc[runs, "batch_size_mean_gamma"] = table.loc[runs, "mean_gamma"].mean()
        low, high = interval(level)
        columns.loc[runs, ["batch_size_mean_gamma_low", "batch_size_mean_gamma_high"]] = low, high
        if previous is not None:
            point = columns.loc[runs[0], "batch_size_mean_gamma"] - previous[0]
            low, high = interval(level - previous[1])
            increases.append((low, high))
            names = [f"batch_size_gamma_increase{suffix}" for suffix in ("", "_low", "_high")]
            columns.loc[runs, names] = point, low, high
        previous = (columns.loc[runs[0], "batch_size_mean_gamma"], level)
    verdict = batch_size_verdict(increases if len(levels) > 1 else [])
    at_level = [run for _, runs in levels for run in runs]
    columns["verdict_batch_size"] = [
        verdict if run in at_level else NO_ABLATION for run in table.index
    ]
    return columns


def schedule_shape(schedule: dict, run: dict) -> dict:
    """The fitted schedule's shape: warm-up and decay present (each at least SHAPE_FACTOR between
    the peak and its ends), its peak over the lr the run used; NaN where none is fitted."""
    if "family" not in schedule:
        return {
            "schedule_warmup": np.nan,
            "schedule_decay": np.nan,
            "schedule_peak_over_lr": np.nan,
        }
    params = schedule["params"]
    constant = schedule["family"] == "constant"
    return {
        "schedule_warmup": not constant
        and params["warmup"] > 0
        and params["start"] <= 1 / SHAPE_FACTOR,
        "schedule_decay": not constant
        and params["decay_end"] > params["warmup"]
        and params["end"] <= 1 / SHAPE_FACTOR,
        "schedule_peak_over_lr": params["peak"] / run["lr"],
    }


def claims_table(
    tables: dict[str, pd.DataFrame],
    schedules: dict[str, dict],
    config: dict,
    interpolations: dict[str, pd.DataFrame] | None = None,
    weighted: bool = True,
) -> pd.DataFrame:
    """One row per run of the config, in its order (see the module docstring); `interpolations`
    (run name -> interpolation table) where that analysis is on; `weighted`: each checkpoint
    weighs the share of training it stands for (report/run_statistics.py), else every row alike."""
    runs = expand_runs(config)
    check_tables(tables, runs)
    rows, draws = {}, {}
    for name, run in runs.items():
        # The guarantee over the directions schedule.json's `bound` took: its ignore_last.
        ignore_last = schedules.get(name, {}).get("ignore_last", IGNORE_LAST)
        values, drawn = run_statistics(tables[name], run, ignore_last, weighted)
        draws[name] = drawn["mean_gamma"]
        shape = schedule_shape(schedules.get(name, {}), run)
        rows[name] = {key: run[key] for key in SETTINGS} | with_intervals(values, drawn) | shape
        rows[name]["schedule_family"] = schedules.get(name, {}).get("family")
    table = pd.DataFrame.from_dict(rows, orient="index")
    table.index.name = "run"
    table = table.join(batch_size_columns(table, draws, config))
    if interpolations:
        check_tables(interpolations, runs, "interpolation")
        straight = {run: monotone_summary(interpolations[run]) for run in table.index}
        for column, key in STRAIGHT_PATH.items():
            table[column] = [straight[run][key] for run in table.index]
    for run, row in table.iterrows():
        for claim, verdict in run_verdicts(row).items():
            table.loc[run, f"verdict_{claim}"] = verdict
    ordered = [c for c in table.columns if not c.startswith("verdict_")]
    return table[ordered + sorted(c for c in table.columns if c.startswith("verdict_"))]


def _cell(value) -> str:
    """A value of the per-run table as the page shows it: numbers to 4 digits, every missing
    value (NaN, None) as NA alike."""
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return "NA"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


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
    shown = table.reset_index()
    page = (
        "<!doctype html>\n<html><head><meta charset='utf-8'><title>Claims</title>"
        "<style>body{font-family:sans-serif;margin:1em}table{border-collapse:collapse;"
        "font-size:0.9em}td,th{border:1px solid #bbb;padding:0.3em 0.5em;vertical-align:top}"
        "</style></head><body>\n<h2>The paper's claims beside our runs</h2>\n"
        + statements.to_html(index=False, border=0, justify="left")
        + "\n<h2>Per run (claims.csv)</h2>\n"
        + shown.astype(object).map(_cell).to_html(index=False, border=0, justify="left")
        + "\n</body></html>\n"
    )
    with written(out_html) as tmp:
        tmp.write_text(page)
    return table
