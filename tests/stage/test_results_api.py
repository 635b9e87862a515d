"""The results API (nowrongturns.open_results, open_run): the weights of a checkpoint give the
losses the geometry table recorded, listing runs opens no file, torch is imported only for
weights, a factory is imported only when trusted."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import h5py
import pytest
import torch
from helpers.results import SEEDS, file_opens

import nowrongturns
from nowrongturns.config.factories import FactoryError
from nowrongturns.measure.gradients import Sources, checkpoint_requests


def test_checkpoint_weights_give_the_geometry_tables_losses(trained):
    """At every measured checkpoint, the run's model with the API's weights gives the loss the
    geometry table records on the same minibatch, for the train batch and every sampled one."""
    _, trajectory, _ = trained()
    run = nowrongturns.open_run(trajectory)
    trajectory, geometry = run.trajectory, run.geometry
    task = trajectory.task()
    model = trajectory.model()
    samples = int(geometry.loc[geometry["source"] == "sampled", "sample"].max()) + 1
    checked = 0
    for step in sorted(set(geometry["step"])):
        model.load_state_dict(trajectory.weights(step))
        batch = torch.from_numpy(trajectory.batch_indices(step))
        requests = checkpoint_requests(
            task, step, batch, run.config["seed"], Sources(samples), [], full_batch=False
        )
        for request in requests:
            source, sample = request.tag
            inputs, targets = task.batch(request.indices, draw=request.draw)
            with torch.no_grad():
                loss = task.loss(model(inputs), targets)
            recorded = geometry.query("step == @step and source == @source and sample == @sample")
            assert loss.item() == pytest.approx(recorded["loss"].item(), rel=1e-6), request.tag
            checked += 1
    assert checked == len(set(geometry["step"])) * (1 + samples)


def test_listing_fifty_runs_opens_no_file(trained, tmp_path):
    """50 run folders (links to one run's files): opening the results, listing the runs, their
    tables and figures opens no file in them; their configs open the trajectories alone."""
    results = tmp_path / "results"
    _, trajectory, _ = trained()
    source = trajectory.parent
    folders = [results / "runs" / f"seed={seed}" for seed in range(50)]
    for folder in folders:
        folder.mkdir(parents=True)
        for name in ("trajectory.h5", "geometry.parquet"):
            os.link(source / name, folder / name)
    with file_opens(folders) as opened:
        opened_results = nowrongturns.open_results(results)
        listed = {run.name: (run.tables, run.figures) for run in opened_results}
    assert len(listed) == 50 and listed["seed=7"] == (["geometry"], {})
    assert opened == []
    with file_opens(folders) as opened:
        configs = opened_results.configs()
    assert len(configs) == 50 and (configs["seed"] == 0).all()
    assert sorted(opened) == sorted(folder / "trajectory.h5" for folder in folders)


@pytest.mark.slow  # the small results, made in 30 s
def test_tables_configs_figures_and_metadata(small_results):
    results = nowrongturns.open_results(small_results)
    assert results.runs == sorted(SEEDS)
    assert results.configs()["seed"].to_dict() == SEEDS
    run = results["seed=1"]
    assert run.config["seed"] == 1 and run.tables == ["geometry", "schedule", "bound"]
    assert run.geometry.attrs["fixed_batches"] == []  # the Parquet file's metadata
    assert run.schedule.attrs["run"] == "seed=1" and "family" in run.schedule.attrs
    assert set(run.bound.columns) >= {"step", "rsi", "eb", "dist"}
    assert run.claims["seed"] == 1 and list(results.claims["run"]) == list(SEEDS)
    assert run.figures == {"geometry": small_results / "figures/seed=1/geometry.png"}
    assert results.figures == {}  # the comparison figures were not drawn here
    alone = nowrongturns.open_run(small_results / "runs/seed=1/geometry.parquet")
    assert alone.name == "seed=1" and alone.figures == run.figures
    steps = run.trajectory.steps()
    assert list(steps.index) == list(range(run.trajectory.total_steps))
    assert {"loss", "lr", "grad_norm"} <= set(steps.columns)
    assert run.trajectory.checkpoint_at(0.5) == 20  # of 0, 1, 2, 10, 20, 30, 40, 44
    with pytest.raises(
        ValueError, match="step 3 is no checkpoint; checkpoints are at steps 0, 1, 2, 10, 20"
    ):
        run.trajectory.weights(3)
    with pytest.raises(KeyError, match="no run 'seed=9'"):
        results["seed=9"]
    with pytest.raises(FileNotFoundError, match="not a results directory"):
        nowrongturns.open_results(small_results / "runs")
    with pytest.raises(ValueError, match="no table 'geometri'"):
        run.table("geometri")


def test_torch_is_imported_only_for_weights(trained):
    """Opening a run, its config, tables and per-step columns import no torch; weights do."""
    _, trajectory, _ = trained()
    script = f"""
import sys, nowrongturns
run = nowrongturns.open_run({str(trajectory.parent)!r})
run.config, run.geometry, run.trajectory.steps()
assert "torch" not in sys.modules, "torch imported before weights were asked for"
weights = run.trajectory.weights(0)
assert "torch" in sys.modules and weights["0.weight"].dtype.is_floating_point
"""
    subprocess.run([sys.executable, "-c", script], check=True, timeout=120)


def test_a_factory_is_imported_only_when_trusted(trained, tmp_path):
    """A trajectory whose config names a model factory: its model is refused, nothing imported,
    unless `trust` names the factory, as `nwt measure --trust` says."""
    folder = tmp_path / "runs" / "mine"
    folder.mkdir(parents=True)
    shutil.copy(trained()[1], folder)
    with h5py.File(folder / "trajectory.h5", "r+") as file:
        file.attrs["config"] = file.attrs["config"].replace('"cnn"', '"mylab_nets:build"')
    trajectory = nowrongturns.open_run(folder).trajectory
    with pytest.raises(FactoryError, match="--trust mylab_nets:build"):
        trajectory.model(0)
    assert "mylab_nets" not in sys.modules
    with pytest.raises(FactoryError, match="cannot import module 'mylab_nets'"):
        trajectory.model(0, trust=["mylab_nets:build"])
