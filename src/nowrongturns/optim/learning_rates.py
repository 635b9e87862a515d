"""Learning-rate schedules from a run config, without torch (the schedule stage, which reads
them, starts in a second rather than the four that importing torch takes).

lrs = lr_schedule(run, total_steps)            # float64 [T], the lr of every step
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from nowrongturns.tables import read_json

# lr_scaling rules: the factor f(B / B0) that a run of batch B applies to an lr given for B0.
LR_SCALING = {"none": lambda ratio: 1.0, "linear": lambda ratio: ratio, "sqrt": math.sqrt}


def peak_lr(run: dict) -> float:
    """The run's `lr`, given for `lr_scaling.reference_batch_size` B0, scaled to its batch size B
    by the rule of `lr_scaling`: lr * B / B0 (linear), lr * sqrt(B / B0) (sqrt), or lr (none)."""
    scaling = run["lr_scaling"]
    return run["lr"] * LR_SCALING[scaling["rule"]](
        run["batch_size"] / scaling["reference_batch_size"]
    )


def lr_schedule(run: dict, total_steps: int, peak: float | None = None) -> np.ndarray:
    """The learning rate of every step 0..T-1 (float64), peaking at `peak` (default
    `peak_lr(run)`)."""
    steps = np.arange(total_steps, dtype=np.float64)
    peak, name = peak_lr(run) if peak is None else peak, run["schedule"]
    if name == "constant":
        return np.full(total_steps, peak)
    if name == "step":
        passed = sum(steps >= round(m * total_steps) for m in run["milestones"])
        return peak * run["decay"] ** passed
    if name in ("warmup_cosine", "linear_decay"):
        warmup_steps = round(run["warmup"] * total_steps)
        final = run["final_lr"] * peak
        # fraction of the decay phase done at each step (0 during warm-up)
        done = np.clip((steps - warmup_steps) / max(total_steps - warmup_steps, 1), 0, 1)
        shape = 0.5 * (1 + np.cos(math.pi * done)) if name == "warmup_cosine" else 1 - done
        lrs = final + (peak - final) * shape
        if warmup_steps:
            lrs[:warmup_steps] = peak * (steps[:warmup_steps] + 1) / warmup_steps
        return lrs
    if name == "file":
        return file_schedule(run["schedule_file"], total_steps)
    raise ValueError(f"schedule {name!r} is unknown")


def file_schedule(path: str, total_steps: int) -> np.ndarray:
    """A schedule from a JSON file with lists `progress` (t/T) and `lr`, interpolated at t/T."""
    if not path or not Path(path).is_file():
        raise ValueError(f"schedule_file {path!r}: no such file (schedule: file needs one)")
    document = read_json(path, "schedule_file")
    try:
        progress = np.asarray(document["progress"], dtype=np.float64)
        lrs = np.asarray(document["lr"], dtype=np.float64)
    except (KeyError, TypeError, ValueError) as error:
        raise ValueError(
            f"schedule_file {path}: needs numeric lists 'progress' and 'lr'"
        ) from error
    if progress.shape != lrs.shape or len(progress) == 0 or np.any(np.diff(progress) <= 0):
        raise ValueError(
            f"schedule_file {path}: 'progress' and 'lr' must have the same non-zero length, "
            "with progress strictly increasing"
        )
    if np.any(lrs <= 0) or not np.all(np.isfinite(lrs)):
        raise ValueError(f"schedule_file {path}: every lr must be positive and finite")
    return np.interp(np.arange(total_steps) / total_steps, progress, lrs)
