"""Dense mode's segments (checkpoint k to k + 1) and the replay jobs they are cut into.

    nwt segments results/runs/base/trajectory.h5 --job-steps 1000 \
        --out results/runs/base/dense/segments.json

A job takes consecutive segments until it holds at least `job_steps` training steps (config
`measure.dense_job_steps`; 1 gives one job per segment). A job pays a fixed cost (a process,
`import torch`, the data, the model, a file written; on a cluster, a submission): at the default
cadence, where the first segments are one step long, one job per segment would cost more than the
steps it replays.
"""

from __future__ import annotations

import json

from nowrongturns.files import written
from nowrongturns.trajectory.reader import TrajectoryReader


def segment_steps(trajectory: str) -> list[list[int]]:
    """[first step, end step] of every segment of a trajectory."""
    with TrajectoryReader(trajectory) as traj:
        steps = traj.checkpoint_steps.tolist()
    return [[start, end] for start, end in zip(steps[:-1], steps[1:])]


def replay_jobs(segments: list[list[int]], job_steps: int) -> list[list[int]]:
    """[first, last] segment of each replay job: consecutive segments, taken until a job holds at
    least `job_steps` steps (the last job may hold fewer)."""
    if job_steps < 1:
        raise ValueError(f"job_steps (measure.dense_job_steps) must be at least 1, not {job_steps}")
    jobs, first, steps = [], 0, 0
    for index, (start, end) in enumerate(segments):
        steps += end - start
        if steps >= job_steps or index == len(segments) - 1:
            jobs.append([first, index])
            first, steps = index + 1, 0
    return jobs


def write_segments(trajectory: str, out: str, job_steps: int) -> None:
    """The segments of a trajectory and the replay jobs they are cut into, as JSON, for the
    workflow to plan one replay job each."""
    segments = segment_steps(trajectory)
    with written(out) as tmp:
        tmp.write_text(json.dumps({"segments": segments, "jobs": replay_jobs(segments, job_steps)}))
