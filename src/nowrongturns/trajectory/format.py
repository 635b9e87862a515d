"""The trajectory file's format: its name and versions, the per-step columns, what a version-1
or 2 file implies, and the errors of a file that cannot be used. One writer (writer.py) and one
reader (reader.py) keep to it; state.py holds the flat layout of the vectors a checkpoint stores.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

FORMAT = "nowrongturns-trajectory"
# Version 2 (docs/design.md#formats-and-their-versions) adds the attributes world_size and precision
# and the step column clip_factor; version-1 files still open, read as world size 1, fp32, no
# clipping. Version 3 adds the attributes `origin` (ORIGINS: our train stage, a user's loop
# through the public recorder, checkpoints imported) and `step_columns`, the per-step columns it
# holds (a user's loop gives what it has; imported checkpoints have none); earlier versions hold
# them all.
FORMAT_VERSION = 3
READABLE_VERSIONS = (1, 2, 3)
ORIGINS = ("trained", "recorded", "imported")
STEP_COLUMNS = {
    "step": np.int64,
    "epoch": np.int64,
    "loss": np.float32,
    "lr": np.float64,
    "grad_norm": np.float32,  # of the minibatch gradient, before any clipping
    "update_norm": np.float32,
    "clip_factor": np.float32,  # what clipping multiplied the gradient by (1: not clipped)
}
# Every per-step column: STEP_COLUMNS, then the [T, B] minibatch indices.
ALL_STEP_COLUMNS = (*STEP_COLUMNS, "batch_indices")
# The run keys of the second wave, as a version-1 trajectory (made before they existed) ran.
VERSION_1_DEFAULTS = {
    "augment": "none",
    "clip_grad_norm": None,
    "lr_scaling": {"rule": "none", "reference_batch_size": 64},
    "width_multiplier": 1,
}
VERSION_1_ATTRIBUTES = {"world_size": 1, "precision": "fp32"}


class TrajectoryError(RuntimeError):
    """A trajectory file that cannot be used; the message names the file (and checkpoint)."""


class DiskFullError(TrajectoryError):
    """No room on the device for the next write; `torn`: a write failed half way (the resume
    cuts what it tore, and HDF5 cannot close the file)."""

    def __init__(self, message: str, torn: bool):
        super().__init__(message)
        self.torn = torn


def partial_path(path: str | Path) -> Path:
    """Where a trajectory lives until it is complete, so a killed job never looks finished."""
    path = Path(path)
    return path.with_name(path.name + ".partial")
