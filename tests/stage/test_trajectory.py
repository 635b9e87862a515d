"""The trajectory file as docs/formats.md#trajectoryh5 describes it, read with h5py alone."""

from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from helpers.runs import corrupted_copy

from nowrongturns.config.sizes import checkpoint_steps
from nowrongturns.measure.stage import measure
from nowrongturns.models import build_model
from nowrongturns.replay.stage import TOLERANCE, Replay
from nowrongturns.tasks.load import load_task
from nowrongturns.trajectory.format import TrajectoryError
from nowrongturns.trajectory.reader import TrajectoryReader
from nowrongturns.trajectory.state import load_flat


def test_every_design_dataset_and_attribute(trained):
    run, trajectory, _ = trained()
    with h5py.File(trajectory, "r") as f:
        attrs = f.attrs
        assert attrs["format"] == "nowrongturns-trajectory" and attrs["format_version"] == 3
        assert attrs["origin"] == "trained" and len(attrs["step_columns"]) == 8
        assert attrs["status"] == "complete"
        for key in ("config", "param_count", "torch_version", "device", "created"):
            assert key in attrs
        assert (attrs["world_size"], attrs["precision"]) == (1, "fp32")
        for name in ("names", "shapes", "offsets"):
            assert name in f["params"]
        total_steps = 44  # 1437 training images // 32 per batch
        for column in ("step", "epoch", "loss", "lr", "grad_norm", "update_norm", "clip_factor"):
            assert f["steps"][column].shape == (total_steps,)
        assert (f["steps/clip_factor"][:] == 1).all()  # no clipping
        assert f["steps/batch_indices"].shape == (total_steps, 32)
        steps = f["checkpoints/step"][:]
        assert steps.tolist() == [0, 1, 2, 10, 20, 30, 40, 44]
        param_count = int(attrs["param_count"])
        assert f["params/offsets"][-1] == param_count
        assert f["checkpoints/weights"].shape == (len(steps), param_count)
        assert f["checkpoints/weights"].dtype == np.float32
        assert f["checkpoints/weights"].fletcher32
        assert f["checkpoints/weights"].chunks == (1, param_count)
        assert f["checkpoints/buffers"].shape[0] == len(steps)
        assert f["checkpoints/buffers"].shape[1] > 0  # BatchNorm statistics
        assert f["checkpoints/optimizer"].shape[0] == len(steps)
        assert f["checkpoints/rng/cpu"].shape == (len(steps), 5056)


def test_checkpoint_cadence():
    assert checkpoint_steps(35, dense_first=10, every=10) == [*range(10), 10, 20, 30, 35]
    assert checkpoint_steps(30, dense_first=3, every=7) == [0, 1, 2, 7, 14, 21, 28, 30]
    assert checkpoint_steps(2, dense_first=10, every=10) == [0, 1, 2]
    # Every half epoch of 7 steps: the steps nearest to 3.5 k (halves up), `every` unused.
    by_epochs = checkpoint_steps(30, 3, 10, every_epochs=0.5, steps_per_epoch=7)
    assert by_epochs == [0, 1, 2, 4, 7, 11, 14, 18, 21, 25, 28, 30]
    # The same share of training apart at any batch size: 4 an epoch at 100 or 13 steps an epoch.
    for steps_per_epoch in (100, 13):
        total = 20 * steps_per_epoch
        count = len(checkpoint_steps(total, 1, 1, 0.25, steps_per_epoch))
        assert count == 1 + 79 + 1  # step 0, 79 quarters before the end, the last


def test_step_row_t_takes_checkpoint_t_to_t_plus_1(trained):
    """Replaying /steps row t (its minibatch and lr) from checkpoint t gives checkpoint t+1."""
    run, trajectory, _ = trained()
    task = load_task(run)
    model = build_model(run, task)
    with TrajectoryReader(trajectory) as traj:
        for index in range(2):  # checkpoints 0 -> 1 and 1 -> 2
            step = traj.checkpoint_steps[index]
            load_flat(model, traj.weights(index), traj.buffers(index))
            model.zero_grad()
            batch = torch.from_numpy(traj.batch_indices(step))
            inputs, targets = task.batch(batch)
            loss = task.loss(model(inputs), targets)
            assert loss.item() == pytest.approx(traj.steps("loss")[step], rel=1e-6)
            loss.backward()
            torch.optim.SGD(model.parameters(), lr=traj.steps("lr")[step]).step()
            replayed = torch.cat([p.detach().reshape(-1) for p in model.parameters()])
            assert torch.equal(replayed, torch.from_numpy(traj.weights(index + 1)))
            assert traj.checkpoint_steps[index + 1] == step + 1


def test_corrupted_checkpoint_names_file_and_checkpoint(trained, tmp_path):
    _, trajectory, _ = trained()
    corrupted = corrupted_copy(trajectory, tmp_path / "corrupted.h5", 3)  # step 10
    with TrajectoryReader(corrupted) as traj:
        traj.weights(2)  # other checkpoints still read
        with pytest.raises(TrajectoryError, match=r"corrupted.h5: checkpoint 3 \(step 10\)"):
            traj.weights(3)


def test_incomplete_trajectory_is_refused(trained, tmp_path):
    _, trajectory, _ = trained()
    copy = tmp_path / "running.h5"
    copy.write_bytes(trajectory.read_bytes())
    with h5py.File(copy, "a") as f:
        f.attrs["status"] = "running"
    with pytest.raises(TrajectoryError, match="running.h5: status is 'running'"):
        TrajectoryReader(copy)


VERSION_1 = Path(__file__).parent / "data/trajectory-v1.h5"


def test_version_1_trajectory_still_opens_and_measures(tmp_path):
    """A file written by the first wave's writer (tests/stage/data/trajectory-v1.h5: digits, a
    1-wide CNN, 5 steps) reads as world size 1, fp32, no clipping, and is measured and replayed.
    It was written on another machine, whose CPU kernels round differently in the last bits, so
    its replay is held to the tolerance, not bit for bit (the replay of a file trained here is)."""
    with h5py.File(VERSION_1) as f:
        assert f.attrs["format_version"] == 1 and "clip_factor" not in f["steps"]
    with TrajectoryReader(VERSION_1) as traj:
        assert (traj.world_size, traj.precision) == (1, "fp32")
        assert (traj.steps("clip_factor") == 1).all()
        assert traj.config["augment"] == "none" and traj.config["clip_grad_norm"] is None
    table = measure(
        VERSION_1,
        tmp_path / "geometry.parquet",
        "v1",
        samples=1,
        full_batch=True,
        random_labels=True,
        device="cpu",
    )
    assert len(table) == 3 * 5  # 3 measured checkpoints x (train, update, sampled, full, random)
    with TrajectoryReader(VERSION_1) as traj:
        replay = Replay(traj, 0, 2, torch.device("cpu"))
        replay.exact = False  # another machine's bits
        steps = [step for step, _, _ in replay.steps()]
    assert steps == list(range(replay.start, replay.end))
    assert len(replay.end_errors) == 3 and max(replay.end_errors) <= TOLERANCE
