"""The scalars of one run along training, as both exporters log them (step as the x-axis):

    train/loss, train/lr                  every optimizer step (the trajectory's /steps)
    {gamma,rsi,eb}/sampled_median         every measured checkpoint, over the sampled minibatches,
    {gamma,rsi,eb}/sampled_p10, _p90      with their 10/90 % band (likewise `fixed`)
    {gamma,rsi,eb}/{source}               train_batch, full_batch, update, random_labels
    geometry/dist                         ||w - w*||
    controls/{z,gamma_origin,gamma_other}_median   the controls, over the sampled minibatches
    schedule/{eta_*,lr_used}              eta* per source, its smoothed and fitted schedule

Values that are NaN (no weight decay, no seed sibling) are left out.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

QUANTITIES = ("gamma", "rsi", "eb")
CONTROLS = ("z", "gamma_origin", "gamma_other")
# Sources with several minibatches per checkpoint: a median and its 10/90 % band.
BANDED = ("sampled", "fixed")
BAND = {"median": 0.5, "p10": 0.1, "p90": 0.9}
COLUMNS = ["name", "step", "value"]


def _long(wide: pd.DataFrame, name: str = "{column}") -> pd.DataFrame:
    """(name, step, value) rows of a table indexed by step, one column per metric, each named
    by formatting `name` with its column."""
    table = wide.set_axis([name.format(column=column) for column in wide.columns], axis=1)
    rows = table.rename_axis("step").reset_index()
    return rows.melt(id_vars="step", var_name="name", value_name="value")[COLUMNS]


def geometry_metrics(geometry: pd.DataFrame) -> pd.DataFrame:
    """The geometry table's metrics: per step, a band for the banded sources, else the value."""
    parts = []
    for source, rows in geometry.groupby("source", sort=True):
        quantities = rows.groupby("step")[list(QUANTITIES)]
        if source in BANDED:
            for label, quantile in BAND.items():
                parts.append(_long(quantities.quantile(quantile), f"{{column}}/{source}_{label}"))
        else:
            parts.append(_long(quantities.median(), f"{{column}}/{source}"))
    controls = [column for column in CONTROLS if column in geometry]
    sampled = geometry[geometry["source"] == "sampled"].groupby("step")[controls]
    parts.append(_long(sampled.median(), "controls/{column}_median"))
    parts.append(_long(geometry.groupby("step")[["dist"]].first(), "geometry/{column}"))
    return pd.concat(parts, ignore_index=True)


def schedule_metrics(schedule: pd.DataFrame) -> pd.DataFrame:
    """eta* per source and band, smoothed, fitted, and the lr used, per measured step."""
    columns = [c for c in schedule.columns if c.startswith("eta_") or c == "lr_used"]
    return _long(schedule.set_index("step")[columns], "schedule/{column}")


def training_metrics(steps: pd.DataFrame) -> pd.DataFrame:
    """The loss and learning rate of every optimizer step (the trajectory's /steps)."""
    return _long(steps[["loss", "lr"]], "train/{column}")


def _without_metadata(table: pd.DataFrame) -> pd.DataFrame:
    """The table without its metadata (`attrs`), which pandas deep-copies into the result of
    every operation: two thirds of an export's own time on the default results."""
    bare = table.copy(deep=False)
    bare.attrs = {}
    return bare


def run_metrics(run) -> pd.DataFrame:
    """Every scalar of a run (a results.Run) that its files hold, as (name, step, value) rows:
    a run retrained in the closed loop has its training curves alone."""
    parts = []
    if (run.folder / "trajectory.h5").is_file():
        parts.append(training_metrics(run.trajectory.steps(["loss", "lr"])))
    if "geometry" in run.tables:
        parts.append(geometry_metrics(_without_metadata(run.geometry)))
    if "schedule" in run.tables:
        parts.append(schedule_metrics(_without_metadata(run.schedule)))
    if not parts:
        return pd.DataFrame({"name": [], "step": [], "value": []})
    metrics = pd.concat(parts, ignore_index=True)
    metrics["step"] = metrics["step"].astype(np.int64)
    metrics["value"] = metrics["value"].astype(np.float64)
    return metrics[np.isfinite(metrics["value"])].reset_index(drop=True)
