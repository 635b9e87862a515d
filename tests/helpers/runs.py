"""Tiny runs for the tests, training as the workflow runs it, and what the stored weights say each
step was."""

from __future__ import annotations

import copy
import json
import re
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

from nowrongturns.config import expand_runs, validate_config

REPO = Path(__file__).resolve().parents[2]
SCHEMA = REPO / "workflow/schemas/config.schema.yaml"

# A run that trains in about a second: 44 steps, checkpoints 0, 1, 2, 10, 20, 30, 40, 44.
TINY_BASE = {
    "task": "digits",
    "model": "cnn",
    "width": 4,
    "lr": 0.05,
    "batch_size": 32,
    "epochs": 1,
    "seed": 0,
    "checkpoint": {"dense_first": 3, "every": 10},
}
# ... with every other run key at its schema default, as the workflow passes it to `nwt train`.
TINY_RUN = expand_runs(validate_config({"base": TINY_BASE}, SCHEMA))["base"]

# The workflow's tiny config, a few seconds per job: base and seed=1, and a contrasting example,
# Rosenbrock's valley (2000 steps of a 2-D point, 2 s; gamma < 0 at every other one of the first).
TINY_WORKFLOW_CONFIG = {
    "base": TINY_BASE,
    "ablations": {"seed": [1]},
    "runs": {
        "rosenbrock": {
            "task": "rosenbrock",
            "model": "point",
            "lr": 0.001,
            "batch_size": 1,
            "epochs": 20,
            "checkpoint": {"dense_first": 10, "every": 500},
        }
    },
    "measure": {"samples": 2},
    "schedule": {"smooth": 3},
}


# A sitecustomize module (on PYTHONPATH) that SIGKILLs its process inside the Nth call of
# Task.batch (NWT_TEST_KILL_AT_BATCH=N: a step inside an epoch), in any process, or only in the
# torchrun rank NWT_TEST_KILL_RANK where that is set.
KILL_AT_BATCH_HOOK = """
import os, signal
at = int(os.environ.get("NWT_TEST_KILL_AT_BATCH", "0"))
rank = os.environ.get("NWT_TEST_KILL_RANK")
if at:  # each checkpoint written as it comes: the tests pin the step a rerun resumes from
    from nowrongturns.record import log
    log.WRITE_EVERY_SECONDS = 0
if at and rank in (None, os.environ.get("RANK")):
    from nowrongturns.tasks.task import Task
    batch, calls = Task.batch, [0]
    def counting_batch(self, *args, **kwargs):
        calls[0] += 1
        if calls[0] == at:
            os.kill(os.getpid(), signal.SIGKILL)
        return batch(self, *args, **kwargs)
    Task.batch = counting_batch
"""


def kill_hooks(folder: Path) -> Path:
    """A folder holding KILL_AT_BATCH_HOOK as sitecustomize.py, for PYTHONPATH."""
    folder.mkdir()
    (folder / "sitecustomize.py").write_text(KILL_AT_BATCH_HOOK)
    return folder


def tiny_run(**changes) -> dict:
    run = copy.deepcopy(TINY_RUN)
    run.update(changes)
    return run


def corrupted_copy(trajectory: Path, copy: Path, checkpoint: int) -> Path:
    """A copy of a trajectory with bytes flipped inside one checkpoint's weights."""
    copy.write_bytes(trajectory.read_bytes())
    with h5py.File(copy, "r") as f:
        chunk = f["checkpoints/weights"].id.get_chunk_info(checkpoint)
    data = bytearray(copy.read_bytes())
    data[chunk.byte_offset + 8 : chunk.byte_offset + 12] = b"\xff\xff\xff\xff"
    copy.write_bytes(bytes(data))
    return copy


# Training as the workflow runs it, and what the stored weights say each step was.


def nwt_train(run: dict, out: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    """`nwt train` as a workflow job runs it: its own process, the CPU, one thread."""
    command = [Path(sys.executable).parent / "nwt", "train", "--run", json.dumps(run)]
    command += ["--out", out, "--device", "cpu", "--threads", "1"]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)


def stored(trajectory: Path) -> dict:
    with h5py.File(trajectory) as f:
        steps = f["steps"]  # a recorded trajectory holds the columns it was given
        return {
            "checkpoint_steps": f["checkpoints/step"][:],
            "weights": f["checkpoints/weights"][:].astype(np.float64),
            **{
                name: steps[name][:] for name in ("lr", "grad_norm", "clip_factor") if name in steps
            },
        }


def stepped_directions(trajectory: Path):
    """(step, d_t = (w_t - w_{t+1}) / lr_t, w_t - w*) wherever steps t and t + 1 are both
    checkpoints, from the stored weights alone."""
    saved = stored(trajectory)
    steps, weights = saved["checkpoint_steps"], saved["weights"]
    for index in range(len(steps) - 2):  # w_{T-1} - w* is the last step itself
        if steps[index + 1] == steps[index] + 1:
            step = int(steps[index])
            direction = (weights[index] - weights[index + 1]) / saved["lr"][step]
            yield step, direction, weights[index] - weights[-1]


def assert_rows_are_the_steps_taken(table, trajectory: Path, source: str) -> None:
    """The `source` rows' norm and dot product with w_t - w* are those of the step the stored
    weights took, to 1e-5 relative, at every pair of consecutive checkpoints."""
    rows = table[table["source"] == source].set_index("step")
    checked = 0
    for step, direction, to_final in stepped_directions(trajectory):
        row = rows.loc[step]
        assert row["grad_norm"] == pytest.approx(np.linalg.norm(direction), rel=1e-5), step
        assert row["dot"] == pytest.approx(direction @ to_final, rel=1e-5), step
        checked += 1
    assert checked >= 3


def one_line_error(stderr: str) -> str:
    """The error line of an `nwt` command that stopped on bad input: no traceback, and nothing
    beside the line of versions every command starts with but that one line."""
    assert "Traceback" not in stderr, stderr
    lines = [line for line in stderr.splitlines() if not re.match(r"nwt \S+: nowrongturns ", line)]
    assert len(lines) == 1 and ": error: " in lines[0], stderr
    return lines[0]
