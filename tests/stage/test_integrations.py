"""The Lightning callback and the Hugging Face TrainerCallback record a few steps of the real
Trainers on the CPU; the checkpoints the Trainers themselves saved (Lightning .ckpt files,
checkpoint-N/ folders) import with their weights to the bit. (The workflow measures both
recordings: tests/workflow/test_any_training.py.)"""

import numpy as np
import pytest
import torch
from helpers.frameworks import RUN, STEPS, hf_train, lightning_fit

from nowrongturns.measure.stage import measure
from nowrongturns.models import build_model
from nowrongturns.record.checkpoint_files import matched, read_checkpoint
from nowrongturns.record.importer import import_trajectory
from nowrongturns.tasks.load import load_task
from nowrongturns.trajectory.reader import TrajectoryReader

pytestmark = pytest.mark.slow  # two Trainers, about 30 s

RECORDED_STEPS = [0, 1, 2, 4, 6, 8]  # dense_first 3, every 2, of 8 steps


def assert_files_imported(files, tmp_path) -> None:
    """The framework's own checkpoints, imported (steps from their names: step=N.ckpt,
    checkpoint-N), hold the weights of those files bit for bit."""
    out = tmp_path / "imported.h5"
    import_trajectory({**RUN, "batch_size": 32}, [str(f) for f in files], str(out))
    model = build_model(RUN, load_task(RUN))  # its parameters' order: the flat vector's
    with TrajectoryReader(out) as traj:
        assert list(traj.checkpoint_steps) == [2, 4, 6, 8] and traj.origin == "imported"
        for index, path in enumerate(files):
            state = matched(read_checkpoint(path), model, path)  # the wrapper's "net." off
            flat = torch.cat([state[name].reshape(-1) for name in model.state_dict()]).numpy()
            np.testing.assert_array_equal(traj.weights(index), flat)


def test_lightning(tmp_path):
    trajectory, ckpts = lightning_fit(tmp_path)
    with TrajectoryReader(trajectory) as traj:
        assert traj.origin == "recorded" and list(traj.checkpoint_steps) == RECORDED_STEPS
        assert traj.step_columns == ("step", "loss", "lr", "batch_indices")
        assert traj.config["optimizer"] == "torch.optim.SGD" and traj.optimizer_recorded
        assert np.isfinite(traj.steps("loss")).all() and len(traj.steps("loss")) == STEPS
    table = measure(str(trajectory), str(tmp_path / "g.parquet"), "lightning", samples=1)
    assert set(table["source"]) >= {"train_batch", "update", "sampled"}
    assert [p.name for p in ckpts] == ["step=2.ckpt", "step=4.ckpt", "step=6.ckpt", "step=8.ckpt"]
    assert_files_imported(ckpts, tmp_path)


def test_hugging_face(tmp_path):
    trajectory, folders = hf_train(tmp_path)
    with TrajectoryReader(trajectory) as traj:
        assert traj.origin == "recorded" and list(traj.checkpoint_steps) == RECORDED_STEPS
        assert traj.step_columns == ("step", "lr") and traj.optimizer_recorded
        assert traj.steps("lr")[0] == pytest.approx(0.01)  # the Trainer's linear decay from it
    table = measure(str(trajectory), str(tmp_path / "g.parquet"), "hf", samples=1)
    assert set(table["source"]) == {"sampled", "full_batch"}  # no minibatch indices recorded
    assert [p.name for p in folders] == [f"checkpoint-{n}" for n in (2, 4, 6, 8)]
    assert_files_imported(folders, tmp_path)
