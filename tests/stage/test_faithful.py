"""Measured as the reference measured: replica batches (batch_shards) in every stage, the full
batch in minibatch chunks, plans from the data present, a cadence in epochs."""

import numpy as np
import pandas as pd
import pytest
import torch
from helpers.datasets import write_noise_images
from helpers.runs import SCHEMA, assert_rows_are_the_steps_taken, stepped_directions, tiny_run

from nowrongturns.cli.cost import plan
from nowrongturns.config import load_config, sizes, validate_config
from nowrongturns.measure.gradients import GradientProbe
from nowrongturns.measure.stage import measure
from nowrongturns.models import build_model
from nowrongturns.replay.stage import replay_segments
from nowrongturns.step import AUGMENT_TRAIN
from nowrongturns.tasks.augment import Draw
from nowrongturns.tasks.load import load_task
from nowrongturns.train.stage import train
from nowrongturns.trajectory.reader import TrajectoryReader
from nowrongturns.trajectory.state import load_flat

REPO = SCHEMA.parents[2]


def model_at(traj: TrajectoryReader, index: int):
    """The run's task and model, set to checkpoint `index`, in train mode."""
    task = load_task(traj.config)
    model = build_model(traj.config, task).train()
    load_flat(model, traj.weights(index), traj.buffers(index))
    return task, model


@pytest.mark.slow
def test_sharded_train_batch_gradient_is_the_step_taken_and_not_the_unsharded_one(tmp_path):
    """A BatchNorm CNN on mnist5k trained with 2 replica batches: the measured train_batch
    gradient is the step the stored weights took (plain SGD), and the gradient of the same
    minibatch normalized as one batch is not."""
    run = tiny_run(task="mnist5k", batch_shards=2, checkpoint={"dense_first": 4, "every": 100})
    trajectory = tmp_path / "trajectory.h5"
    train(run, trajectory, device="cpu")
    table = measure(
        trajectory,
        tmp_path / "geometry.parquet",
        "r",
        samples=0,
        full_batch=False,
        random_labels=False,
        update=False,
        device="cpu",
    )
    assert_rows_are_the_steps_taken(table, trajectory, "train_batch")
    assert table.attrs["batch_shards"] == 2
    with TrajectoryReader(trajectory) as traj:
        assert traj.shards == 2
        differences = []
        for step, direction, _ in stepped_directions(trajectory):
            task, model = model_at(traj, step)  # steps 0..3 are checkpoints 0..3
            indices = torch.from_numpy(traj.batch_indices(step))
            inputs, targets = task.batch(indices, draw=Draw(AUGMENT_TRAIN, (step,)))
            _, whole = GradientProbe(model, task, shards=1).minibatch(inputs, targets)
            whole = whole.double().numpy()
            differences.append(np.linalg.norm(whole - direction) / np.linalg.norm(direction))
    assert min(differences) > 1e-3, differences


def test_full_batch_in_minibatch_chunks_is_the_mean_of_their_gradients(tmp_path):
    """full_batch_chunk: batch with 2 shards of a 32-example minibatch: the full-batch gradient of
    a BatchNorm CNN is the mean of the gradients of the training set's consecutive 16-example
    chunks, each weighed by its size, to 1e-6."""
    run = tiny_run(batch_shards=2)
    trajectory = tmp_path / "trajectory.h5"
    train(run, trajectory, device="cpu")
    out = tmp_path / "geometry.parquet"
    table = measure(
        trajectory, out, "r", samples=0, random_labels=False, update=False, device="cpu"
    )
    assert pd.read_parquet(out).attrs["full_batch_chunk"] == {"setting": "batch", "examples": 16}
    row = table[(table["source"] == "full_batch") & (table["step"] == 0)].iloc[0]
    with TrajectoryReader(trajectory) as traj:
        task, model = model_at(traj, 0)
        to_final = traj.weights(0).astype(np.float64) - traj.weights(-1)
    probe = GradientProbe(model, task, shards=1)
    mean = np.zeros_like(to_final)
    for chunk in torch.arange(task.train_size).split(16):
        _, gradient = probe.minibatch(*task.batch(chunk))
        mean += gradient.double().numpy() * len(chunk) / task.train_size
    assert row["grad_norm"] == pytest.approx(np.linalg.norm(mean), rel=1e-6)
    assert row["dot"] == pytest.approx(mean @ to_final, rel=1e-6)
    # One chunk of all examples (the old behaviour, an integer) normalizes differently.
    whole = probe.minibatch(*task.batch(torch.arange(task.train_size)))[1].double().numpy()
    assert np.linalg.norm(whole - mean) > 1e-3 * np.linalg.norm(mean)


def test_an_imagenet_folder_plans_and_trains_the_images_it_holds(tmp_path):
    """26 training images, batch 8: 3 steps an epoch, planned from the folder and trained."""
    root = tmp_path / "imagenet"
    write_noise_images(root / "train", 13, np.random.default_rng(0))
    write_noise_images(root / "val", 1, np.random.default_rng(1))
    base = {
        "task": "imagenet",
        "model": "resnet18",
        "width_multiplier": 0.125,
        "batch_size": 8,
        "epochs": 2,
        "checkpoint": {"dense_first": 1, "every_epochs": 1},
    }
    config = validate_config({"base": base, "data": {"imagenet": str(root)}}, SCHEMA)
    planned = plan(config).loc["base"]
    assert (planned["examples"], planned["examples_from"]) == (26, "data_dir")
    assert planned["steps"] == 2 * (26 // 8)
    assert planned["checkpoints"] == 3  # steps 0, 3 (one epoch) and 6
    run = {**config["base"], "data_dir": str(root)}
    trajectory = tmp_path / "trajectory.h5"
    assert train(run, trajectory, device="cpu") == "complete"
    with TrajectoryReader(trajectory) as traj:
        assert traj.checkpoint_steps.tolist() == [0, 3, 6]


def test_without_its_data_a_plan_says_it_counted_the_official_size():
    facts = sizes.task_facts(tiny_run(task="imagenet", model="resnet50", data_dir="/nonexistent"))
    assert (facts.train_examples, facts.counted_from) == (1_281_167, "official size")


def test_every_batch_size_of_the_cifar_preset_has_the_same_measured_checkpoints():
    preset = load_config(str(REPO / "configs/paper-cifar10-resnet18.yaml"))
    planned = plan(validate_config(preset, SCHEMA))
    sweep = planned.loc[["base", "batch_size=64", "batch_size=128", "batch_size=512"]]
    assert sweep["checkpoints"].max() - sweep["checkpoints"].min() <= 1
    assert (planned["shards"] == 2).all()


@pytest.mark.parametrize(
    "preset, shards",
    [
        ("paper-cifar10-resnet18", 2),
        ("paper-cifar10-architecture", 2),
        ("paper-imagenet-resnet50", 4),
        ("paper-imagenet-model-size", 4),
        ("paper-wikitext2-transformer", 2),
        ("paper-vaihingen-segmentation", 1),
    ],
)
def test_paper_presets_set_the_references_replica_counts(preset, shards):
    config = validate_config(load_config(str(REPO / f"configs/{preset}.yaml")), SCHEMA)
    assert (plan(config)["shards"] == shards).all()
    readme = (REPO / "configs/README.md").read_text()
    assert f"| {preset} | {shards} | `exp/" in readme


def test_a_sharded_run_replays_bit_for_bit_with_the_first_shards_statistics(trained, tmp_path):
    """Replay cuts each minibatch into the run's replicas as training did, in one process on
    the CPU: every segment ends on its checkpoint bit for bit (replay raises otherwise), and the
    running statistics stored are those of the first shard alone."""
    run, trajectory, _ = trained(batch_shards=2)
    dense = replay_segments(trajectory, 0, 0, tmp_path / "0-0.parquet", "tiny", device="cpu")
    assert dense.attrs["end_errors"] == [0.0]
    with TrajectoryReader(trajectory) as traj:
        task, model = model_at(traj, 0)
        indices = torch.from_numpy(traj.batch_indices(0))
        inputs, _ = task.batch(indices, draw=Draw(AUGMENT_TRAIN, (0,)))
        model(inputs[:16])  # the first shard updates the running statistics, as in step 0
        buffers = torch.cat([b.reshape(-1).float() for b in model.buffers()]).numpy()
        np.testing.assert_array_equal(buffers, traj.buffers(1))
