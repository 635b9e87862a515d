"""A train job killed with SIGKILL resumes to the very same trajectory; a diverged run fails alone.

Both through the real snakemake. The kill happens inside the `nwt train` process that Snakemake
starts: a sitecustomize module on PYTHONPATH patches one function there to SIGKILL its process.
"""

import copy
import json
import os
import subprocess
import sys
from pathlib import Path

import h5py
import pytest
from helpers.compare_results import assert_same_contents, hdf5_contents
from helpers.runs import SCHEMA, TINY_BASE
from helpers.workflow import Workflow

from nowrongturns.config import expand_runs, validate_config
from nowrongturns.trajectory.format import partial_path

KILL_HOOK = """
import os, signal, sys
point = os.environ.get("NWT_TEST_KILL")
if point and sys.argv[0].endswith("nwt"):
    from nowrongturns.record import log
    from nowrongturns.tasks.task import Task
    from nowrongturns.trajectory.writer import TrajectoryWriter
    log.WRITE_EVERY_SECONDS = 0  # each checkpoint written as it comes: the resume step is pinned
    kill = lambda: os.kill(os.getpid(), signal.SIGKILL)
    calls = {"batch": 0}
    if point == "inside_epoch":  # the 56th minibatch: step 55, epoch 1, after checkpoint 50
        batch = Task.batch
        def counting_batch(self, *args, **kwargs):
            calls["batch"] += 1
            if calls["batch"] == 56:
                kill()
            return batch(self, *args, **kwargs)
        Task.batch = counting_batch
    if point == "after_checkpoint":  # right after checkpoint 50 is flushed
        append = TrajectoryWriter.append_checkpoints
        def append_then_kill(self, checkpoints):
            append(self, checkpoints)
            if checkpoints[-1][0] == 50:
                kill()
        TrajectoryWriter.append_checkpoints = append_then_kill
    if point == "during_checkpoint_write":  # checkpoint 50: weights written, step not yet
        append_rows = TrajectoryWriter._append
        def append_until_optimizer(dataset, rows):
            whole = len(dataset.file["checkpoints/step"])
            if dataset.name == "/checkpoints/optimizer" and whole == 7:
                dataset.file.flush()  # the weights really are on disk when it dies
                kill()
            append_rows(dataset, rows)
        TrajectoryWriter._append = staticmethod(append_until_optimizer)
"""

# 2 epochs of 44 steps; checkpoints 0, 1, 2, 10, 20, ..., 80, 88 (checkpoint 50 is the 8th)
KILLED_RUN = {**TINY_BASE, "epochs": 2, "checkpoint": {"dense_first": 3, "every": 10}}
OPTIMIZER_AT = {
    "inside_epoch": "momentum",
    "after_checkpoint": "adam",
    "during_checkpoint_write": "adamw",
}
# The last whole checkpoint when each kill happens: 50 is not whole while it is being written.
RESUMED_AT = {"inside_epoch": 50, "after_checkpoint": 50, "during_checkpoint_write": 40}


@pytest.mark.parametrize("point", list(OPTIMIZER_AT))
def test_killed_train_job_resumes_to_the_same_trajectory(tmp_path, point):
    config = {
        "base": {**KILLED_RUN, "optimizer": OPTIMIZER_AT[point]},
        "train": {"device": "cpu"},
        "measure": {"samples": 1},
    }
    run = expand_runs(validate_config(copy.deepcopy(config), SCHEMA))["base"]
    reference = tmp_path / "reference.h5"
    subprocess.run(
        [
            Path(sys.executable).parent / "nwt",
            "train",
            "--run",
            json.dumps(run),
            "--out",
            reference,
            "--threads",
            "1",
            "--device",
            "cpu",
        ],
        check=True,
    )

    hooks = tmp_path / "hooks"
    hooks.mkdir()
    (hooks / "sitecustomize.py").write_text(KILL_HOOK)
    flow = Workflow(tmp_path / "flow", config)
    target = "results/runs/base/trajectory.h5"
    os.environ.update(PYTHONPATH=str(hooks), NWT_TEST_KILL=point)
    try:
        killed = flow.snakemake(target, check=False)
    finally:
        del os.environ["PYTHONPATH"], os.environ["NWT_TEST_KILL"]
    assert killed.returncode != 0
    trajectory = flow.root / target
    assert not trajectory.exists() and partial_path(trajectory).exists()

    flow.snakemake(target)
    log = (flow.root / "results/logs/train/base.log").read_text()
    assert f"resuming from the checkpoint at step {RESUMED_AT[point]}" in log
    assert_same_contents(hdf5_contents(trajectory), hdf5_contents(reference))


def test_diverged_run_fails_its_measure_alone(tmp_path):
    # Steps of 1e30 overflow float32 at once: the loss of step 1 is not finite.
    config = {
        "base": TINY_BASE,
        "ablations": {"lr": [1e30]},
        "measure": {"samples": 1},
        # Neither the closed loop nor the analyses are what fails here: left out, for time.
        "schedule": {"retrain": False},
        "analyses": {"interpolation": False},
    }
    flow = Workflow(tmp_path, config)
    result = flow.snakemake("--workflow-profile", "workflow/profiles/default", check=False)
    assert result.returncode != 0
    with h5py.File(flow.root / "results/runs/lr=1e+30/trajectory.h5") as f:
        assert f.attrs["status"] == "diverged"
        step = int(f.attrs["diverged_step"])
    message = (flow.root / "results/logs/measure/lr=1e+30.log").read_text()
    assert "lr=1e+30" in message and f"diverged at step {step}" in message
    assert not (flow.root / "results/runs/lr=1e+30/geometry.parquet").exists()
    assert (flow.root / "results/figures/base/geometry.png").exists()  # the other run finished
