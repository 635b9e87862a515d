"""A run's measurement cut into jobs of at most `measure.job_checkpoints` checkpoints, and their
tables gathered into the one geometry table a single job would write.

    nwt measure-jobs results/runs/base/trajectory.h5 --job-checkpoints 50 --out jobs.json
    nwt gather-geometry parts/*.parquet --out results/runs/base/geometry.parquet
"""

from __future__ import annotations

import json

import pandas as pd

from nowrongturns.files import written
from nowrongturns.trajectory.reader import TrajectoryReader


def measure_jobs(trajectory: str, out: str, job_checkpoints: int) -> None:
    """[first, last] measured checkpoints of each measure job, at most `job_checkpoints` each,
    as JSON, for the workflow to plan one measure job each."""
    if job_checkpoints < 1:
        raise ValueError(
            f"job_checkpoints (measure.job_checkpoints) must be at least 1, not {job_checkpoints}"
        )
    with TrajectoryReader(trajectory) as traj:
        measured = len(traj.checkpoint_steps) - 1
    jobs = [
        [first, min(first + job_checkpoints, measured) - 1]
        for first in range(0, measured, job_checkpoints)
    ]
    with written(out) as tmp:
        tmp.write_text(json.dumps({"measured_checkpoints": measured, "jobs": jobs}))


def gather(parts: list[str], out: str) -> pd.DataFrame:
    """One geometry table of every measure job's rows, in checkpoint order: the one-job table
    (or one layers table of every job's, the same way)."""
    tables = sorted((pd.read_parquet(part) for part in parts), key=lambda t: t["step"].min())
    table = pd.concat(tables, ignore_index=True)
    keys = ["step", "source", "sample", *(["layer"] if "layer" in table else [])]
    if table[keys].duplicated().any():
        raise ValueError(f"{out}: the measure jobs overlap (a checkpoint appears twice)")
    table.attrs = tables[0].attrs
    with written(out) as tmp:
        table.to_parquet(tmp, index=False)
    return table
