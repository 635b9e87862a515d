"""Other endpoints than w* = w_T: on the quadratic, gamma and eta* against w_tau and against the
end of a continuation equal their closed forms."""

import numpy as np
import pandas as pd
import pytest
from helpers.runs import SCHEMA

from nowrongturns.config import expand_runs, validate_config
from nowrongturns.measure.endpoints import continue_training, measure_endpoints
from nowrongturns.tasks.synthetic import quadratic_problem
from nowrongturns.train.stage import train
from nowrongturns.trajectory.reader import TrajectoryReader

# Full-batch gradient descent on the quadratic, every step a checkpoint (as tests/stage/
# test_schedule.py): 40 steps.
GRADIENT_DESCENT = {
    "task": "quadratic",
    "model": "linear",
    "width": 16,
    "lr": 0.5,
    "batch_size": 256,
    "epochs": 40,
    "checkpoint": {"dense_first": 41, "every": 1},
}


@pytest.fixture(scope="module")
def endpoints(tmp_path_factory):
    folder = tmp_path_factory.mktemp("endpoints")
    run = expand_runs(validate_config({"base": GRADIENT_DESCENT}, SCHEMA))["base"]
    assert train(run, folder / "t.h5", device="cpu") == "complete"
    table = measure_endpoints(
        folder / "t.h5",
        folder / "endpoints.parquet",
        "gd",
        progress=[0.5],
        continued=0.25,
        samples=2,
        device="cpu",
    )
    with TrajectoryReader(folder / "t.h5") as traj:
        weights = np.stack([traj.weights(i) for i in range(len(traj.checkpoint_steps))])
    return run, folder, weights, table


def closed_form(run, weights: np.ndarray, endpoint: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """gamma_t = cos(A (w_t - c), w_t - e) and eta*_t = <A (w_t - c), w_t - e> / ||A (w_t - c)||^2
    at each of `weights`."""
    _, _, hessian, minimum = quadratic_problem(run["width"])
    gradients = (weights.astype(np.float64) - minimum) @ hessian
    to_end = weights.astype(np.float64) - endpoint
    dots = np.einsum("kp,kp->k", gradients, to_end)
    norms = np.linalg.norm(gradients, axis=1)
    return dots / (norms * np.linalg.norm(to_end, axis=1)), dots / norms**2


def test_against_an_earlier_checkpoint_the_closed_form_with_w_tau(endpoints):
    run, _, weights, table = endpoints
    cut = table[table["endpoint"] == "progress=0.5"]
    assert set(cut["endpoint_step"]) == {20}
    assert set(cut["source"]) == {"train_batch", "sampled"}
    for source, rows in cut.groupby("source"):
        rows = rows.groupby("step").first()
        assert list(rows.index) == list(range(20))  # the path cut at w_20
        gamma, eta = closed_form(run, weights[:20], weights[20].astype(np.float64))
        np.testing.assert_allclose(rows["gamma"], gamma, rtol=1e-6, err_msg=source)
        eta_measured = rows["dot"] / rows["grad_norm"] ** 2
        np.testing.assert_allclose(eta_measured, eta, rtol=1e-6, err_msg=source)


def test_against_the_end_of_a_continuation(endpoints):
    """10 more steps of gradient descent at the last lr from w_T: the closed form of that end,
    and gamma against it at every checkpoint before w_T."""
    run, folder, weights, table = endpoints
    _, _, hessian, minimum = quadratic_problem(run["width"])
    end = weights[-1].astype(np.float64)
    for _ in range(10):
        end = end - run["lr"] * hessian @ (end - minimum)
    continued, step = continue_training(folder / "t.h5", 0.25, "cpu")
    assert step == 50
    np.testing.assert_allclose(continued, end, rtol=1e-5, atol=1e-6)
    rows = table[(table["endpoint"] == "continued") & (table["source"] == "train_batch")]
    assert list(rows["step"]) == list(range(40)) and set(rows["endpoint_step"]) == {50}
    gamma, _ = closed_form(run, weights[:40], continued.astype(np.float64))
    np.testing.assert_allclose(rows["gamma"], gamma, rtol=1e-6)


def test_the_file_holds_the_geometry_columns_and_the_endpoint(endpoints):
    _, folder, _, table = endpoints
    written = pd.read_parquet(folder / "endpoints.parquet")
    assert {"endpoint", "endpoint_step", "gamma", "rsi", "eb", "progress"} <= set(written.columns)
    assert len(written) == len(table)


def test_an_endpoint_with_nothing_before_it_is_named(endpoints, tmp_path):
    _, folder, _, _ = endpoints
    with pytest.raises(ValueError, match=r"measure.endpoints.progress"):
        measure_endpoints(folder / "t.h5", tmp_path / "e.parquet", "gd", progress=[0.01])
    with pytest.raises(ValueError, match="no endpoint"):
        measure_endpoints(folder / "t.h5", tmp_path / "e.parquet", "gd")
