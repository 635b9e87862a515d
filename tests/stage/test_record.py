"""nowrongturns.Recorder around a plain training loop of a user's own: the trajectory it writes,
the sources the measure stage then computes from it, and what it refuses."""

import h5py
import numpy as np
import pytest
import torch
from helpers.runs import assert_rows_are_the_steps_taken

import nowrongturns
from nowrongturns.measure.stage import measure
from nowrongturns.models import build_model
from nowrongturns.record import log
from nowrongturns.tasks.load import load_task
from nowrongturns.trajectory.reader import TrajectoryReader
from nowrongturns.trajectory.writer import TrajectoryWriter

# What the measure stage needs to rebuild the user's model and data: here built-in ones.
RUN = {"task": "digits", "model": "mlp", "width": 16, "depth": 1, "seed": 0}
BATCH = 32


def user_loop(path, optimizer_class, steps=24, indices=True, lr=0.05, **options):
    """A loop as a user writes it: their own sampling, their own optimizer and scheduler; the
    recorder told the minibatch's indices (or not)."""
    task = load_task(RUN)
    torch.manual_seed(0)
    model = build_model(RUN, task)
    optimizer = optimizer_class(model.parameters(), lr=lr, **options)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=10, gamma=0.5)
    draws = torch.Generator().manual_seed(1)
    run = RUN if indices else {**RUN, "batch_size": BATCH}
    checkpoint = {"dense_first": 6, "every": 10}
    with nowrongturns.Recorder(path, model, optimizer, run=run, checkpoint=checkpoint) as recorder:
        for _ in range(steps):
            batch = torch.randperm(task.train_size, generator=draws)[:BATCH]
            inputs, targets = task.batch(batch)
            optimizer.zero_grad()
            loss = task.loss(model(inputs), targets)
            loss.backward()
            optimizer.step()
            recorder.step(loss=loss, indices=batch if indices else None)
            scheduler.step()
    return path


@pytest.mark.parametrize(
    "optimizer_class, options",
    [(torch.optim.SGD, {}), (torch.optim.SGD, {"momentum": 0.9}), (torch.optim.Adam, {})],
)
def test_measured_steps_are_the_steps_the_loop_took(tmp_path, optimizer_class, options):
    trajectory = user_loop(tmp_path / "trajectory.h5", optimizer_class, **options)
    with TrajectoryReader(trajectory) as traj:
        assert traj.format_version == 3 and traj.origin == "recorded"
        assert traj.step_columns == ("step", "loss", "lr", "batch_indices")
        assert list(traj.checkpoint_steps) == [0, 1, 2, 3, 4, 5, 10, 20, 24]
        assert traj.steps("lr")[[0, 9, 10, 23]].tolist() == [0.05, 0.05, 0.025, 0.0125]
        assert traj.config["optimizer"] == f"torch.optim.{optimizer_class.__name__}"
    table = measure(str(trajectory), str(tmp_path / "g.parquet"), "mine", samples=1)
    assert set(table["source"]) == {"train_batch", "update", "sampled", "full_batch"} | {
        "random_labels"
    }
    # The update replays one step of the recorded optimizer from its recorded state.
    assert_rows_are_the_steps_taken(table, trajectory, "update")
    if options == {} and optimizer_class is torch.optim.SGD:  # plain SGD steps along its gradient
        assert_rows_are_the_steps_taken(table, trajectory, "train_batch")


def test_a_loop_without_indices_has_no_train_batch_and_says_why(tmp_path):
    trajectory = user_loop(tmp_path / "trajectory.h5", torch.optim.SGD, steps=12, indices=False)
    with h5py.File(trajectory) as f:
        assert "batch_indices" not in f["steps"] and list(f["steps"]) == ["loss", "lr", "step"]
    table = measure(str(trajectory), str(tmp_path / "g.parquet"), "mine", samples=2)
    assert set(table["source"]) == {"sampled", "full_batch"}
    # The sampled minibatches are the run's batch size: the gradients are those of 32 examples.
    assert table["grad_norm"].notna().all()
    with pytest.raises(ValueError, match="'train_batch'.*minibatch indices of each step"):
        measure(str(trajectory), str(tmp_path / "h.parquet"), "mine", require=["train_batch"])
    assert not (tmp_path / "h.parquet").exists()


def test_a_loop_that_raises_leaves_no_trajectory(tmp_path):
    path = tmp_path / "trajectory.h5"
    model = torch.nn.Linear(3, 2)
    with pytest.raises(RuntimeError, match="the user's own"):
        with nowrongturns.Recorder(path, model, run=RUN | {"batch_size": 4}) as recorder:
            for _ in range(15):
                recorder.step(loss=torch.tensor(1.0))
            raise RuntimeError("the user's own error")
    assert list(tmp_path.iterdir()) == []


def test_the_steps_give_the_same_values_each_time(tmp_path):
    recorder = nowrongturns.Recorder(tmp_path / "t.h5", torch.nn.Linear(3, 2), run=RUN)
    recorder.step(loss=torch.tensor(1.0), indices=[0, 1])
    with pytest.raises(ValueError, match="step 1: given \\['loss'\\], but the first step gave"):
        recorder.step(loss=torch.tensor(1.0))
    with pytest.raises(ValueError, match="3 indices, but the first step's minibatch had 2"):
        recorder.step(loss=torch.tensor(1.0), indices=[0, 1, 2])
    recorder.abandon()


def test_a_run_without_model_or_task_is_refused():
    with pytest.raises(ValueError, match="run must be a dict naming at least `model` and `task`"):
        nowrongturns.Recorder("t.h5", torch.nn.Linear(3, 2), run={"model": "mlp"})


def test_the_recorded_weights_are_the_models(tmp_path):
    model = build_model(RUN, load_task(RUN))  # the model the run names: the reader checks it
    with nowrongturns.Recorder(tmp_path / "t.h5", model, run=RUN | {"batch_size": 4}) as recorder:
        for _ in range(3):
            with torch.no_grad():
                for parameter in model.parameters():
                    parameter.add_(1.0)
            recorder.step()
    with TrajectoryReader(tmp_path / "t.h5") as traj:
        assert traj.step_columns == ("step",) and not traj.optimizer_recorded
        assert np.isnan(traj.steps("loss")).all()
        last = torch.cat([p.reshape(-1) for p in model.parameters()]).detach().numpy()
        np.testing.assert_array_equal(traj.weights(-1), last)
        assert list(traj.checkpoint_steps) == [0, 1, 2, 3]


def test_steps_past_the_first_buffers_are_kept(tmp_path):
    """The device buffers start at 1024 steps and grow: nothing before or after is lost."""
    model = build_model(RUN, load_task(RUN))
    run = RUN | {"batch_size": 2}
    with nowrongturns.Recorder(tmp_path / "t.h5", model, run=run, checkpoint={"every": 700}) as rec:
        for step in range(1500):
            rec.step(loss=torch.tensor(float(step)), lr=step / 10, indices=[step, step + 1])
    with TrajectoryReader(tmp_path / "t.h5") as traj:
        assert list(traj.checkpoint_steps) == [*range(10), 700, 1400, 1500]
        np.testing.assert_array_equal(traj.steps("loss"), np.arange(1500))
        np.testing.assert_array_equal(traj.steps("lr"), np.arange(1500) / 10)
        assert traj.batch_indices(1200).tolist() == [1200, 1201]


@pytest.mark.parametrize("held_bytes", [2**28, 1])
def test_checkpoints_of_one_write_interval_are_written_together(tmp_path, monkeypatch, held_bytes):
    """The first checkpoint is on disk at once; later ones wait for the interval (an hour here)
    and are written with the steps before them at close, in one append each; checkpoints whose
    arrays pass HELD_BYTES are written as they come."""
    monkeypatch.setattr(log, "WRITE_EVERY_SECONDS", 3600)
    monkeypatch.setattr(log, "HELD_BYTES", held_bytes)
    task = load_task(RUN)
    model = build_model(RUN, task)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    appends = []
    append = TrajectoryWriter.append_checkpoints

    def counted(self, checkpoints):
        appends.append([step for step, _ in checkpoints])
        append(self, checkpoints)

    monkeypatch.setattr(TrajectoryWriter, "append_checkpoints", counted)
    checkpoint = {"dense_first": 3, "every": 10}
    recorder = nowrongturns.Recorder(
        tmp_path / "t.h5", model, optimizer, run={**RUN, "batch_size": BATCH}, checkpoint=checkpoint
    )
    inputs, targets = task.batch(torch.arange(BATCH))
    for _ in range(12):
        optimizer.zero_grad()
        loss = task.loss(model(inputs), targets)
        loss.backward()
        optimizer.step()
        recorder.step(loss=loss)
    recorder.log.wait()
    on_disk = recorder.writer.file["checkpoints/step"][:].tolist()
    recorder.close()
    with TrajectoryReader(tmp_path / "t.h5") as traj:
        assert list(traj.checkpoint_steps) == [0, 1, 2, 10, 12]
        assert len(traj.steps("loss")) == 12
    if held_bytes > 1:
        assert on_disk == [0] and appends == [[0], [1, 2, 10, 12]]
    else:
        assert on_disk == [0, 1, 2, 10] and appends == [[0], [1], [2], [10], [12]]
