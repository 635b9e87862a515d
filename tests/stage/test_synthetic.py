"""Synthetic tasks whose answer is known, trained and measured through the real stages.

quadratic: least squares whose full-batch gradient is A (w - c), so the measured RSI, EB and gamma
of every checkpoint have a closed form. rosenbrock: plain SGD bounces across the steep valley in
its first steps, so the gradient points away from the final point (gamma < 0) where it cannot on
the quadratic.
"""

import numpy as np
import pytest
import torch
from helpers.runs import SCHEMA

from nowrongturns.config import expand_runs, validate_config
from nowrongturns.measure.stage import measure
from nowrongturns.models import build_model
from nowrongturns.tasks.load import load_task
from nowrongturns.tasks.synthetic import quadratic_problem
from nowrongturns.train.stage import train
from nowrongturns.trajectory.reader import TrajectoryReader

# Plain SGD at a constant learning rate, the schema's default checkpoint cadence (0..9, every 10th).
# quadratic: 80 steps, stopping well short of c (see test_quadratic_matches_the_closed_form).
QUADRATIC = {
    "task": "quadratic",
    "model": "linear",
    "width": 16,
    "lr": 0.5,
    "batch_size": 32,
    "epochs": 10,
}
# rosenbrock: 2000 steps; lr * the valley's curvature at the start is about 2.
ROSENBROCK = {"task": "rosenbrock", "model": "point", "lr": 0.001, "batch_size": 1, "epochs": 20}
TOLERANCE = 1e-6


def schema_run(base: dict) -> dict:
    """`base` with every other run key at its schema default, as the workflow passes it."""
    return expand_runs(validate_config({"base": base}, SCHEMA))["base"]


@pytest.fixture(scope="module")
def measured(tmp_path_factory):
    """Train and measure a run once per module: (run, checkpoint weights [K, P], geometry)."""
    cache = {}

    def get(base: dict):
        key = repr(sorted(base.items()))
        if key not in cache:
            run, folder = schema_run(base), tmp_path_factory.mktemp(base["task"])
            trajectory = folder / "trajectory.h5"
            assert train(run, trajectory, device="cpu") == "complete"
            geometry = measure(
                trajectory,
                folder / "geometry.parquet",
                run_name=base["task"],
                samples=2,
                full_batch=True,
                random_labels=True,
                device="cpu",
            )
            with TrajectoryReader(trajectory) as traj:
                weights = np.stack([traj.weights(i) for i in range(len(traj.checkpoint_steps))])
            cache[key] = run, weights, geometry
        return cache[key]

    return get


def full_batch_rows(geometry):
    return geometry[geometry["source"] == "full_batch"].reset_index(drop=True)


def test_quadratic_problem_has_the_promised_spectrum():
    inputs, targets, hessian, minimum = quadratic_problem(16)
    assert inputs.dtype == targets.dtype == np.float32 and inputs.shape == (256, 16)
    second_moment = inputs.astype(np.float64).T @ inputs / len(inputs)
    np.testing.assert_allclose(second_moment, hessian, atol=1e-6)
    np.testing.assert_allclose(np.linalg.eigvalsh(hessian), np.geomspace(0.01, 1, 16), rtol=1e-9)
    np.testing.assert_allclose(targets, inputs @ minimum, rtol=1e-5, atol=1e-5)
    task = load_task(schema_run(QUADRATIC))
    assert (task.kind, task.input_shape, task.train_size) == ("regression", (16,), 256)
    _, batch_targets = task.batch(torch.arange(3))
    assert batch_targets.dtype == torch.float32


def test_quadratic_matches_the_closed_form(measured):
    """gamma, RSI and EB of the full-batch gradient match G = A (w - c), computed in float64 from
    the stored float32 weights with A = X^T X / N from the float32 inputs X actually trained on.

    To 1e-6 absolute at every checkpoint because the run stops short of c (|w_T - c| ~ 0.35 |c|):
    the float32 residual X w - y loses digits to cancellation as w nears c, and after about 400
    steps of this SGD the gradient's direction is no longer good to 1e-6."""
    run, weights, geometry = measured(QUADRATIC)
    inputs, _, _, minimum = quadratic_problem(run["width"])
    inputs = inputs.astype(np.float64)
    hessian = inputs.T @ inputs / len(inputs)
    rows = full_batch_rows(geometry)
    assert len(rows) == len(weights) - 1  # every checkpoint but w* = w_T itself
    to_final = weights[:-1].astype(np.float64) - weights[-1]
    gradients = (weights[:-1] - minimum) @ hessian  # A symmetric: rows are A (w - c)
    dot = np.einsum("kp,kp->k", gradients, to_final)
    dist, grad_norm = np.linalg.norm(to_final, axis=1), np.linalg.norm(gradients, axis=1)
    expected = {"rsi": dot / dist**2, "eb": grad_norm / dist, "gamma": dot / (grad_norm * dist)}
    for column, values in expected.items():
        np.testing.assert_allclose(rows[column], values, rtol=0, atol=TOLERANCE, err_msg=column)


def test_rosenbrock_takes_wrong_turns_the_quadratic_does_not(measured):
    """Full-batch gradient descent on the quadratic has <A (w_t - c), w_t - w_T> > 0 for all t < T
    (each eigen-component shrinks monotonically when lr < 1 / lambda_max, as here), and this SGD
    run keeps it; on Rosenbrock's valley the first steps bounce across it, gamma about -0.46."""
    quadratic = full_batch_rows(measured(QUADRATIC)[2])
    assert (quadratic["gamma"] > 0).all()
    rosenbrock = full_batch_rows(measured(ROSENBROCK)[2])
    assert (rosenbrock["gamma"] < 0).any()


@pytest.mark.parametrize(
    "model, task, kinds",
    [
        ("linear", ROSENBROCK, "regression tasks, not objective"),
        ("point", QUADRATIC, "objective tasks, not regression"),
        ("mlp", QUADRATIC, "classification tasks, not regression"),
    ],
)
def test_model_refuses_a_task_of_another_kind(model, task, kinds):
    """Behind the config check, which refuses it first (test_config.py)."""
    run = {**schema_run(task), "model": model}
    with pytest.raises(ValueError, match=f"model '{model}' is for {kinds} tasks"):
        build_model(run, load_task(run))
