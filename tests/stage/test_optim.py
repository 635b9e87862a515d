"""Optimizers and schedules: every pairing trains, schedules have their shapes, `file` is exact."""

import json

import h5py
import numpy as np
import pytest
import torch
from helpers.runs import tiny_run

from nowrongturns.optim.learning_rates import lr_schedule
from nowrongturns.optim.optimizers import BUILTIN_OPTIMIZERS, build_optimizer
from nowrongturns.optim.state import load_state_vector, state_size, state_vector
from nowrongturns.train.stage import train

SCHEDULES = ["constant", "step", "warmup_cosine", "linear_decay", "file"]


@pytest.fixture
def schedule_file(tmp_path):
    path = tmp_path / "schedule.json"
    path.write_text(json.dumps({"progress": [0.0, 0.5, 1.0], "lr": [0.01, 0.1, 0.02]}))
    return str(path)


@pytest.mark.parametrize("schedule", SCHEDULES)
@pytest.mark.parametrize("optimizer", BUILTIN_OPTIMIZERS)
def test_every_optimizer_with_every_schedule(tmp_path, optimizer, schedule, schedule_file):
    run = tiny_run(
        model="mlp",
        optimizer=optimizer,
        schedule=schedule,
        batch_size=256,
        schedule_file=schedule_file,
        lr=0.01 if "adam" in optimizer else 0.05,
        weight_decay=1e-4,
    )
    assert train(run, tmp_path / "t.h5", device="cpu") == "complete"
    with h5py.File(tmp_path / "t.h5") as f:
        total_steps = len(f["steps/lr"])  # 1437 // 256 = 5 steps
        assert np.array_equal(f["steps/lr"][:], lr_schedule(run, total_steps))
        assert np.isfinite(f["steps/loss"][:]).all()
        assert f["steps/loss"][-1] < f["steps/loss"][0]


def test_schedule_shapes():
    run = tiny_run(lr=0.1, warmup=0.1, milestones=[0.5, 0.75], decay=0.1, final_lr=0.0)
    steps = lr_schedule({**run, "schedule": "step"}, 100)
    assert steps[49] == pytest.approx(0.1) and steps[50] == pytest.approx(0.01)
    assert steps[75] == pytest.approx(0.001)
    for name in ("warmup_cosine", "linear_decay"):
        lrs = lr_schedule({**run, "schedule": name}, 100)
        assert np.all(np.diff(lrs[:10]) > 0), name  # warm-up
        assert lrs[9] == pytest.approx(0.1) and lrs.max() == pytest.approx(0.1), name
        assert np.all(np.diff(lrs[10:]) <= 0) and lrs[-1] < 0.01, name  # decay to final_lr
    assert lr_schedule({**run, "schedule": "linear_decay"}, 100)[55] == pytest.approx(0.05)


def test_file_schedule_is_reproduced_exactly(tmp_path):
    total_steps = 44
    wanted = np.random.default_rng(0).uniform(0.01, 0.1, total_steps)
    path = tmp_path / "schedule.json"
    path.write_text(
        json.dumps(
            {"progress": (np.arange(total_steps) / total_steps).tolist(), "lr": wanted.tolist()}
        )
    )
    train(tiny_run(schedule="file", schedule_file=str(path)), tmp_path / "t.h5", device="cpu")
    with h5py.File(tmp_path / "t.h5") as f:
        assert np.array_equal(f["steps/lr"][:], wanted)


@pytest.mark.parametrize(
    "content, message",
    [
        (None, "no such file"),
        ({"progress": [0, 1]}, "needs numeric lists"),
        ({"progress": [0, 1], "lr": [0.1]}, "same non-zero length"),
        ({"progress": [0.5, 0.2], "lr": [0.1, 0.1]}, "strictly increasing"),
        ({"progress": [0, 1], "lr": [0.1, -1]}, "positive"),
    ],
)
def test_bad_schedule_file_names_the_file(tmp_path, content, message):
    path = tmp_path / "bad.json"
    if content is not None:
        path.write_text(json.dumps(content))
    with pytest.raises(ValueError, match=message) as error:
        lr_schedule(tiny_run(schedule="file", schedule_file=str(path)), 10)
    assert "bad.json" in str(error.value)


# Every torch.optim optimizer a plain training step drives (LBFGS needs a closure, SparseAdam
# sparse gradients, Muon matrices only).
TORCH_OPTIMIZERS = [
    "ASGD",
    "Adadelta",
    "Adafactor",
    "Adagrad",
    "Adam",
    "AdamW",
    "Adamax",
    "NAdam",
    "RAdam",
    "RMSprop",
    "Rprop",
    "SGD",
]


@pytest.mark.parametrize(
    "name", [*BUILTIN_OPTIMIZERS, *(f"torch.optim.{name}" for name in TORCH_OPTIMIZERS)]
)
def test_optimizer_state_round_trip(name):
    """A fresh optimizer loaded from the state vector takes the very same next step; the state
    before any step loads back as a fresh optimizer's."""
    torch.manual_seed(0)
    weight_decay = 0.0 if name.endswith("Rprop") else 1e-3
    run = tiny_run(optimizer=name, weight_decay=weight_decay)
    model = torch.nn.Linear(5, 3)
    inputs = torch.randn(8, 5)

    def step(optimizer):
        optimizer.zero_grad()
        model(inputs).square().mean().backward()
        optimizer.step()

    original = build_optimizer(run, model)
    fresh = state_vector(original, name)
    assert len(fresh) == state_size(original, name)
    step(original)
    saved_weights = [p.detach().clone() for p in model.parameters()]
    vector = state_vector(original, name)
    step(original)
    expected = [p.detach().clone() for p in model.parameters()]

    with torch.no_grad():
        for param, saved in zip(model.parameters(), saved_weights):
            param.copy_(saved)
    restored = build_optimizer(run, model)
    load_state_vector(restored, name, vector.numpy())
    step(restored)
    for param, want in zip(model.parameters(), expected):
        assert torch.equal(param, want)
    load_state_vector(restored, name, fresh.numpy())
    assert torch.equal(state_vector(restored, name), fresh)


def test_a_derived_schedule_can_be_trained_on(trained, tmp_path):
    """schedule.json from the schedule stage is a `schedule: file` for another run: the run's lr
    at each step t is the derived schedule's at t/T."""
    from nowrongturns.schedule.stage import derive_schedule

    _, trajectory, geometry = trained()
    document = tmp_path / "schedule.json"
    others = [tmp_path / name for name in ("schedule.csv", "bound.csv", "cosine.json")]
    derive_schedule(geometry, trajectory, others[0], document, *others[1:], smooth=3)
    derived = json.loads(document.read_text())
    run = tiny_run(schedule="file", schedule_file=str(document))
    train(run, tmp_path / "derived.h5", device="cpu")
    with h5py.File(tmp_path / "derived.h5") as f:
        lrs = f["steps/lr"][:]
    assert np.array_equal(lrs, derived["lr"])
