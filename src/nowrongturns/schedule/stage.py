"""The schedule stage: the locally optimal step eta*, its fitted shape, and the convergence bound.

    nwt schedule results/runs/base/geometry.parquet results/runs/base/trajectory.h5 \
        --csv results/runs/base/schedule.csv --json results/runs/base/schedule.json \
        --bound results/runs/base/bound.csv --cosine results/runs/base/cosine.json

eta*_t = RSI_t / EB_t^2 = <D, w_t - w*> / ||D||^2 along the direction D the optimizer steps in:
the sampled minibatch gradients for SGD (plus lambda w with weight decay; their median and 10-90 %
band), the optimizer's own direction d_t for momentum and Adam (source `update`). A step of eta*
along D shrinks ||w - w*||^2 by 1 - gamma^2, the most any step along D can
(docs/quantities.md#rsi-eb-and-gamma).

Per checkpoint, schedule.csv has eta* of each source, the raw eta* the schedule follows, a
running median of log eta* over `smooth` checkpoints, the fitted family's eta*, the lr used and
eta* as a multiple of it. schedule.json has the fitted family (`schedule_fit`), its parameters
and fit quality, and, as lists `progress` and `lr`, the derived schedule at every step t/T, scaled
to the chosen peak, which a run trains on with `schedule: file` (the closed loop's `--derived`
run); cosine.json is the same for its standard baseline, warm-up + cosine at the same peak
(`--cosine`). bound.csv is the convergence bound (`bound`). The last `ignore_last` of training,
where w* = w_T pulls eta* to 0 by construction, is left out of the fit and of mu and L.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd

from nowrongturns.files import written
from nowrongturns.optim.learning_rates import lr_schedule, peak_lr
from nowrongturns.schedule.bound import bound_table, guarantee
from nowrongturns.schedule.fit import FAMILIES, choose, fit_families, schedule_curve
from nowrongturns.tables import GEOMETRY_COLUMNS, read_parquet
from nowrongturns.trajectory.reader import TrajectoryReader

FORMAT = "nowrongturns-schedule"
FORMAT_VERSION = 2


def _without_nan(value):
    """NaN (no guarantee, say) as JSON null: NaN is not JSON."""
    if isinstance(value, dict):
        return {key: _without_nan(item) for key, item in value.items()}
    if isinstance(value, float) and not np.isfinite(value):
        return None
    return value


def directions(run: dict, measured=None) -> tuple[str, str, str]:
    """(source of the directions eta* is taken along, source of the direction each step actually
    moved along, suffix of their columns) for the run's optimizer. Where the table lacks them
    (`measured`: its sources; a recorded or imported trajectory without the optimizer's state or
    the minibatches), the sampled gradients stand in for both."""
    sampled = ("sampled", "_wd" if run["weight_decay"] else "")
    if run["optimizer"] == "sgd":
        source, step_source, suffix = sampled[0], "train_batch", sampled[1]
    else:
        source, step_source, suffix = "update", "update", ""  # it holds any weight decay
    if measured is not None and source not in measured:
        source, suffix = sampled
    if measured is not None and step_source not in measured:
        step_source = source
    return source, step_source, suffix


def _rows(table: pd.DataFrame, source: str, where: str) -> pd.DataFrame:
    rows = table[table["source"] == source]
    if rows.empty:
        raise ValueError(f"{where}: no {source!r} rows, which this run's schedule needs")
    return rows


def _check_steps(table: pd.DataFrame, path, total_steps: int) -> None:
    """The table's steps are steps of the trajectory, before they index its learning rates, and
    its progress is step / total steps, as the measure stage writes it (the fit weighs each
    checkpoint by the share of training it stands for, from its progress)."""
    if table["step"].min() < 0 or table["step"].max() >= total_steps:
        raise ValueError(
            f"{path}: column 'step' runs from {table['step'].min()} to {table['step'].max()}, "
            f"outside the trajectory's steps 0 to {total_steps - 1}"
        )
    expected = table["step"].to_numpy() / total_steps
    wrong = ~np.isclose(table["progress"].to_numpy(dtype=float), expected, rtol=0, atol=1e-9)
    if wrong.any():
        row = int(np.argmax(wrong))
        raise ValueError(
            f"{path}: column 'progress' is not step / {total_steps} (the trajectory's steps): "
            f"{table['progress'].iloc[row]} at step {table['step'].iloc[row]} (row {row})"
        )


def eta_star_table(geometry: pd.DataFrame, run: dict, smooth: int, where: str) -> pd.DataFrame:
    """Per checkpoint: step, progress, eta* of every source measured, eta_raw (the one the
    schedule follows), eta_smooth (running median of log eta_raw; eta* <= 0 left out)."""
    source, _, suffix = directions(run, set(geometry["source"]))
    _rows(geometry, source, where)
    eta = geometry[f"dot{suffix}"] / geometry[f"grad_norm{suffix}"] ** 2
    by_step = eta.groupby([geometry["step"], geometry["source"]])
    table = by_step.median().unstack().add_prefix("eta_")
    sampled = eta[geometry["source"] == "sampled"].groupby(geometry["step"])
    for quantile in (10, 90):
        table[f"eta_sampled_p{quantile}"] = sampled.quantile(quantile / 100)
    table = table.reset_index().rename_axis(columns=None)
    table.insert(1, "progress", geometry.groupby("step")["progress"].first().to_numpy())
    table["eta_raw"] = table[f"eta_{source}"]
    log_eta = np.log(table["eta_raw"].where(table["eta_raw"] > 0))
    smoothed = log_eta.rolling(smooth, center=True, min_periods=1).median()
    table["eta_smooth"] = np.exp(smoothed)
    return table


def fit_schedule(table: pd.DataFrame, fit: str, ignore_last: float, where: str) -> dict:
    """Each family fitted to log eta_smooth over all but the last `ignore_last` of training, each
    checkpoint weighted by the span of training it stands for; the chosen fit and all of them."""
    kept = table[(table["progress"] <= 1 - ignore_last) & np.isfinite(np.log(table["eta_smooth"]))]
    if len(kept) < 3:
        raise ValueError(f"{where}: fewer than 3 checkpoints with eta* > 0 to fit a schedule to")
    spans = np.gradient(kept["progress"].to_numpy())
    families = FAMILIES if fit == "auto" else (fit,)
    fits = fit_families(kept["progress"], np.log(kept["eta_smooth"]), spans, families)
    return {"chosen": choose(fits), "families": fits}


def derive_schedule(
    geometry: str,
    trajectory: str,
    out_csv: str,
    out_json: str,
    out_bound: str,
    out_cosine: str,
    smooth: int,
    fit: str = "auto",
    peak: str = "fitted",
    ignore_last: float = 0.05,
    dense: str | None = None,
) -> pd.DataFrame:
    table = read_parquet(geometry, "geometry", GEOMETRY_COLUMNS)
    with TrajectoryReader(trajectory) as traj:
        run, lrs, total_steps = traj.config, traj.steps("lr"), traj.total_steps
    _check_steps(table, geometry, total_steps)
    name = str(table["run"].iloc[0])
    schedule = eta_star_table(table, run, smooth, geometry)
    schedule["lr_used"] = lrs[schedule["step"]]
    fitted = fit_schedule(schedule, fit, ignore_last, geometry)
    chosen = fitted["chosen"]
    schedule["eta_fit"] = schedule_curve(chosen["family"], chosen["params"], schedule["progress"])
    schedule["multiplier"] = schedule["eta_raw"] / schedule["lr_used"]

    source, step_source, suffix = directions(run, set(table["source"]))
    promise = guarantee(_rows(table, source, geometry), suffix, ignore_last)
    # Dense mode has every step's gradient: the bound's factors are then all measured, for SGD.
    # (It replays gradients, not the direction momentum or Adam stepped along.)
    if dense and step_source == "train_batch":
        dense_table = read_parquet(dense, "dense", GEOMETRY_COLUMNS)
        _check_steps(dense_table, dense, total_steps)
        steps_taken = _rows(dense_table, step_source, dense)
    else:
        steps_taken = _rows(table, step_source, geometry)
    if step_source == "sampled":  # standing in for the steps taken: their median per step
        steps_taken = steps_taken.groupby("step").median(numeric_only=True).reset_index()
    bound = bound_table(steps_taken, suffix, lrs, total_steps, promise["rate"])

    progress = np.arange(total_steps) / total_steps
    derived = schedule_curve(chosen["family"], chosen["params"], progress)
    derived_peak = chosen["params"]["peak"] if peak == "fitted" else peak_lr(run)
    derived *= derived_peak / derived.max()
    cosine = lr_schedule({**run, "schedule": "warmup_cosine"}, total_steps, peak=derived_peak)
    document = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "run": name,
        "optimizer": run["optimizer"],
        "source": source,
        "smooth": smooth,
        "ignore_last": ignore_last,
        "total_steps": total_steps,
        "family": chosen["family"],
        "params": chosen["params"],
        "fit_quality": {key: chosen[key] for key in ("rmse_log10", "r2_log", "bic")},
        "families": fitted["families"],
        "peak": peak,
        "peak_lr": derived_peak,
        "bound": promise,
        # What the closed loop's `{run}--derived` trains on with `schedule: file`, at t/T.
        "progress": progress.tolist(),
        "lr": derived.tolist(),
    }
    baseline = {"format": FORMAT, "run": name, "family": "warmup_cosine", "peak_lr": derived_peak}
    for path, frame in ((out_csv, schedule), (out_bound, bound)):
        with written(path) as tmp:
            frame.to_csv(tmp, index=False)
    for path, content in (
        (out_json, document),
        (out_cosine, {**baseline, "progress": progress.tolist(), "lr": cosine.tolist()}),
    ):
        with written(path) as tmp:
            tmp.write_text(json.dumps(_without_nan(content), indent=1, allow_nan=False))
    return schedule
