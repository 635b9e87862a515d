"""Measurement at the paper's scale: the full batch at a cadence, the reference's fixed
minibatches, measure jobs scattered over checkpoints and gathered, and the cost stated first."""

import copy
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from helpers.runs import REPO, SCHEMA, TINY_WORKFLOW_CONFIG
from helpers.workflow import Workflow

from nowrongturns.cli.cost import plan
from nowrongturns.config import validate_config
from nowrongturns.measure.gradients import fixed_batches
from nowrongturns.measure.stage import measure
from nowrongturns.models import build_model
from nowrongturns.tasks.load import load_task
from nowrongturns.trajectory.reader import TrajectoryReader
from nowrongturns.trajectory.state import load_flat


def test_full_batch_every_third_checkpoint_and_the_first_and_last(trained, tmp_path):
    _, trajectory, _ = trained()  # checkpoints 0, 1, 2, 10, 20, 30, 40 measured (and 44)
    # Every 3rd: measured checkpoints 0, 3 and 6, the last; every 4th: 0, 4 and the last, 6.
    for every, full_batch_steps in ((3, [0, 10, 40]), (4, [0, 20, 40])):
        table = measure(
            trajectory,
            tmp_path / "g.parquet",
            "r",
            samples=1,
            full_batch=True,
            random_labels=False,
            device="cpu",
            full_batch_every=every,
        )
        assert table.loc[table["source"] == "full_batch", "step"].tolist() == full_batch_steps


def test_fixed_minibatches_are_the_same_at_every_checkpoint(trained, tmp_path):
    run, trajectory, _ = trained()
    out = tmp_path / "g.parquet"
    measure(
        trajectory,
        out,
        "r",
        samples=1,
        full_batch=False,
        random_labels=False,
        device="cpu",
        fixed_batches=4,
    )
    table = pd.read_parquet(out)
    fixed = table[table["source"] == "fixed"]
    assert fixed.groupby("step")["sample"].apply(list).tolist() == [[0, 1, 2, 3]] * 7
    indices = table.attrs["fixed_batches"]  # in the Parquet file, beside the rows
    task = load_task(run)
    expected = fixed_batches(run["seed"], task.train_size, 32, 4)
    assert np.array_equal(indices, [batch.tolist() for batch in expected])
    assert len({tuple(batch) for batch in indices}) == 4 and len(indices[0]) == 32
    # Each fixed row is the loss of those very examples at that checkpoint's weights.
    model = build_model(run, task).train()
    with TrajectoryReader(trajectory) as traj:
        for index in (0, 4):
            load_flat(model, traj.weights(index), traj.buffers(index))
            step = traj.checkpoint_steps[index]
            for number, batch in enumerate(indices):
                with torch.no_grad():
                    loss = task.loss(
                        model(task.batch(torch.tensor(batch))[0]),
                        task.batch(torch.tensor(batch))[1],
                    )
                row = fixed[(fixed["step"] == step) & (fixed["sample"] == number)]
                assert row["loss"].item() == pytest.approx(loss.item(), rel=1e-6)


@pytest.mark.slow
def test_measure_jobs_of_three_checkpoints_gather_into_the_one_job_table(tmp_path):
    """The tiny run (7 measured checkpoints): ceil(7 / 3) = 3 measure jobs, whose gathered table
    is the one-job table exactly, the full batch every 2nd checkpoint counted across jobs (0, 2,
    4, 6, where a count per job would take 3 and 5)."""
    config = copy.deepcopy(TINY_WORKFLOW_CONFIG)
    config.update(ablations={}, runs={}, schedule={"retrain": False})
    settings = {"samples": 2, "fixed_batches": 2, "full_batch_every": 2}
    config["measure"] = {**settings, "job_checkpoints": 3}
    flow = Workflow(tmp_path / "flow", config)
    target = "results/runs/base/geometry.parquet"
    flow.snakemake(target)
    jobs = sorted(p.stem for p in (flow.root / "results/logs/measure/base").glob("*.log"))
    assert jobs == ["0-2", "3-5", "6-6"], jobs
    one_job = tmp_path / "one.parquet"
    trajectory = flow.root / "results/runs/base/trajectory.h5"
    command = [Path(sys.executable).parent / "nwt", "measure", trajectory, "--out", one_job]
    command += ["--run-name", "base", "--device", "cpu", "--threads", "1"]
    for key, value in settings.items():  # the workflow's settings, as options
        command += [f"--{key.replace('_', '-')}", str(value)]
    subprocess.run(command, check=True)
    gathered, expected = pd.read_parquet(flow.root / target), pd.read_parquet(one_job)
    pd.testing.assert_frame_equal(gathered, expected, check_exact=True)
    assert gathered.attrs["fixed_batches"] == expected.attrs["fixed_batches"]
    full_batch = gathered.loc[gathered["source"] == "full_batch", "step"].unique()
    assert list(full_batch) == [0, 2, 20, 40]


@pytest.mark.slow
def test_plan_counts_the_gradients_a_measured_run_takes(tmp_path):
    config = copy.deepcopy(TINY_WORKFLOW_CONFIG)
    config.update(ablations={}, runs={})
    config["measure"] = {"samples": 2, "full_batch_every": 3, "fixed_batches": 2}
    planned = plan(validate_config(config, SCHEMA)).loc["base"]
    flow = Workflow(tmp_path, config)
    flow.snakemake("results/runs/base/geometry.parquet")
    table = pd.read_parquet(tmp_path / "results/runs/base/geometry.parquet")
    counts = table["source"].value_counts()
    minibatches = sum(
        counts.get(s, 0) for s in ("train_batch", "sampled", "fixed", "random_labels")
    )
    assert planned["minibatch_gradients"] == minibatches
    assert planned["full_batch_passes"] == counts["full_batch"]
    with TrajectoryReader(tmp_path / "results/runs/base/trajectory.h5") as traj:
        assert planned["steps"] == traj.total_steps
        assert planned["checkpoints"] == len(traj.checkpoint_steps)
        assert planned["parameters"] == traj.param_count
    size = (tmp_path / "results/runs/base/trajectory.h5").stat().st_size / 1e9
    assert planned["checkpoint_gb"] <= size  # the file holds the checkpoints and more


PRESETS = sorted((REPO / "configs").glob("paper-*.yaml"))


def test_plan_lists_every_preset_and_keeps_measurement_below_half_a_training():
    result = subprocess.run(
        [Path(sys.executable).parent / "nwt", "plan", *map(str, PRESETS)],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    )
    for preset in PRESETS:
        assert f"configs/{preset.name}: minibatch passes" in result.stdout
        config = validate_config(yaml.safe_load(preset.read_text()), SCHEMA)
        table = plan(config)
        measured = table[~table.index.str.contains("--")]
        assert (measured["measure/train"] <= 0.5).all(), (preset.stem, measured["measure/train"])
        # Every source of the geometry table is still measured, and the fixed minibatches.
        sources = config["measure"]
        assert sources["random_labels"] and sources["update"] and sources["fixed_batches"] > 0
        assert sources["full_batch"] or preset.stem.startswith("paper-imagenet")
    cifar = plan(validate_config(yaml.safe_load(PRESETS[1].read_text()), SCHEMA)).loc["base"]
    assert PRESETS[1].stem == "paper-cifar10-resnet18"
    assert cifar["full_batch_passes"] > 0 and cifar["measure/train"] <= 0.5
