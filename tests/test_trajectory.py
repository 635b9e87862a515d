"""The trajectory file as DESIGN section 4 describes it, read with h5py alone."""

import h5py
import numpy as np
import pytest
import torch
from conftest import corrupted_copy

from nowrongturns.data import load_task
from nowrongturns.models import build_model
from nowrongturns.train import checkpoint_steps
from nowrongturns.trajectory import TrajectoryError, TrajectoryReader, load_flat


def test_every_design_dataset_and_attribute(trained):
    run, trajectory, _ = trained()
    with h5py.File(trajectory, "r") as f:
        attrs = f.attrs
        assert attrs["format"] == "nowrongturns-trajectory" and attrs["format_version"] == 1
        assert attrs["status"] == "complete"
        for key in ("config", "param_count", "torch_version", "device", "created"):
            assert key in attrs
        for name in ("names", "shapes", "offsets"):
            assert name in f["params"]
        total_steps = 44  # 1437 training images // 32 per batch
        for column in ("step", "epoch", "loss", "lr", "grad_norm", "update_norm"):
            assert f["steps"][column].shape == (total_steps,)
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
