"""The schedule stage: the locally optimal step eta*_t = RSI_t / EB_t^2 = <G, w - w*> / ||G||^2.

    nwt schedule results/runs/base/geometry.parquet results/runs/base/trajectory.h5 \
        --csv results/runs/base/schedule.csv --json results/runs/base/schedule.json

Per checkpoint, eta* is the median over the `sampled` minibatches, then a centred running median
over `smooth` checkpoints. One SGD step of size eta* shrinks ||w - w*||^2 by the factor
1 - gamma^2, the most any step along G can (DESIGN section 1).
"""

from __future__ import annotations

import json

import pandas as pd

from .files import written
from .trajectory import TrajectoryReader

FORMAT = "nowrongturns-schedule"


def eta_star_table(geometry: pd.DataFrame, smooth: int) -> pd.DataFrame:
    """step, progress, eta_star (median over sampled minibatches) and eta_star_smooth."""
    sampled = geometry[geometry["source"] == "sampled"]
    eta = (sampled["dot"] / sampled["grad_norm"] ** 2).groupby(sampled["step"]).median()
    table = pd.DataFrame(
        {
            "step": eta.index.to_numpy(),
            "progress": sampled.groupby("step")["progress"].first().to_numpy(),
            "eta_star": eta.to_numpy(),
        }
    )
    table["eta_star_smooth"] = (
        table["eta_star"].rolling(smooth, center=True, min_periods=1).median()
    )
    return table


def derive_schedule(
    geometry: str, trajectory: str, out_csv: str, out_json: str, smooth: int
) -> pd.DataFrame:
    table = pd.read_parquet(geometry)
    if table.empty:
        raise ValueError(f"{geometry}: the geometry table has no rows")
    run = str(table["run"].iloc[0])
    schedule = eta_star_table(table, smooth)
    with TrajectoryReader(trajectory) as traj:
        schedule["lr_used"] = traj.steps("lr")[schedule["step"]]
        total_steps = traj.total_steps
    with written(out_csv) as tmp:
        schedule.to_csv(tmp, index=False)
    document = {
        "format": FORMAT,
        "format_version": 1,
        "run": run,
        "source": "sampled",
        "smooth": smooth,
        "total_steps": total_steps,
        "step": schedule["step"].tolist(),
        "progress": schedule["progress"].tolist(),
        "eta_star_smooth": schedule["eta_star_smooth"].tolist(),
        # What a run with `schedule: file` trains on, interpolated at t/T.
        "lr": schedule["eta_star_smooth"].tolist(),
    }
    with written(out_json) as tmp:
        tmp.write_text(json.dumps(document, indent=1))
    return schedule
