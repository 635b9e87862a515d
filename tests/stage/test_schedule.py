"""The schedule stage: eta* and the bound against closed forms, the fit, the default run's shape."""

import json

import numpy as np
import pandas as pd
import pytest
from helpers.runs import SCHEMA

from nowrongturns.config import expand_runs, validate_config
from nowrongturns.measure.stage import measure
from nowrongturns.optim.learning_rates import file_schedule
from nowrongturns.report.run_statistics import run_statistics
from nowrongturns.report.uncertainty import interval
from nowrongturns.schedule.fit import choose, fit_families, schedule_curve
from nowrongturns.schedule.stage import derive_schedule
from nowrongturns.tasks.synthetic import quadratic_problem
from nowrongturns.train.stage import train
from nowrongturns.trajectory.reader import TrajectoryReader

# Full-batch gradient descent on the quadratic (batch = its 256 examples), every step a checkpoint:
# 40 steps, far enough from c that the float32 gradient keeps its digits (see test_synthetic).
GRADIENT_DESCENT = {
    "task": "quadratic",
    "model": "linear",
    "width": 16,
    "lr": 0.5,
    "batch_size": 256,
    "epochs": 40,
    "checkpoint": {"dense_first": 41, "every": 1},
}


def derive(folder, geometry, trajectory, **options):
    outputs = {name: folder / name for name in ("s.csv", "s.json", "b.csv", "c.json")}
    schedule = derive_schedule(geometry, trajectory, *outputs.values(), smooth=3, **options)
    bound = pd.read_csv(outputs["b.csv"])
    return schedule, json.loads(outputs["s.json"].read_text()), bound, outputs


@pytest.fixture(scope="module")
def gradient_descent(tmp_path_factory):
    folder = tmp_path_factory.mktemp("gd")
    run = expand_runs(validate_config({"base": GRADIENT_DESCENT}, SCHEMA))["base"]
    assert train(run, folder / "t.h5", device="cpu") == "complete"
    measure(
        folder / "t.h5",
        folder / "g.parquet",
        "gd",
        samples=2,
        full_batch=True,
        random_labels=False,
        device="cpu",
    )
    with TrajectoryReader(folder / "t.h5") as traj:
        weights = np.stack([traj.weights(i) for i in range(len(traj.checkpoint_steps))])
    return run, weights, *derive(folder, folder / "g.parquet", folder / "t.h5")


def test_eta_star_matches_its_closed_form_on_gradient_descent(gradient_descent):
    """eta*_t = <A (w_t - c), w_t - w_T> / ||A (w_t - c)||^2, to 1e-6 relative at every step."""
    run, weights, schedule, _, _, _ = gradient_descent
    inputs, _, _, minimum = quadratic_problem(run["width"])
    hessian = inputs.astype(np.float64).T @ inputs / len(inputs)
    gradients = (weights[:-1] - minimum) @ hessian
    to_final = weights[:-1].astype(np.float64) - weights[-1]
    expected = np.einsum("kp,kp->k", gradients, to_final) / np.einsum(
        "kp,kp->k", gradients, gradients
    )
    assert len(schedule) == 40
    for column in ("eta_train_batch", "eta_full_batch", "eta_raw"):
        np.testing.assert_allclose(schedule[column], expected, rtol=1e-6, err_msg=column)


def test_predicted_distance_equals_the_actual_one_at_every_step(gradient_descent):
    """||w_0 - w*|| prod (1 - 2 eta RSI + eta^2 EB^2)^(1/2) is ||w_t - w*|| at each step t < T."""
    _, weights, _, _, bound, _ = gradient_descent
    actual = np.linalg.norm(weights.astype(np.float64) - weights[-1], axis=1)
    assert bound["measured"].iloc[:-1].all()
    np.testing.assert_allclose(bound["dist"], actual, rtol=1e-6)
    np.testing.assert_allclose(bound["dist_predicted"].iloc[:-1], actual[:-1], rtol=1e-6)


def test_guarantee_and_derived_files(gradient_descent):
    """mu and L come from the path, and the two lr files are what `schedule: file` trains on."""
    run, _, schedule, document, bound, outputs = gradient_descent
    promise = document["bound"]
    assert promise["mu"] > 0 and promise["rsi_positive_fraction"] == 1.0
    assert 0 < promise["rate"] < 1
    np.testing.assert_allclose(
        bound["dist_guaranteed"].iloc[2] / bound["dist"].iloc[0], promise["rate"], rtol=1e-12
    )
    derived = file_schedule(str(outputs["s.json"]), document["total_steps"])
    assert derived.max() == pytest.approx(document["params"]["peak"], rel=1e-12)
    cosine = file_schedule(str(outputs["c.json"]), document["total_steps"])
    assert cosine.max() == pytest.approx(document["peak_lr"]) and cosine[-1] < cosine.max() / 50


def test_a_progress_column_that_is_not_step_over_total_is_refused_naming_the_file(
    gradient_descent, tmp_path
):
    """The fit weighs each checkpoint by the share of training its progress says it stands for:
    a table whose progress disagrees with its steps (all 0, here) is refused before any fit,
    naming the file, and nothing is written."""
    folder = tmp_path / "bad"
    folder.mkdir()
    source = next(gradient_descent[-1]["s.csv"].parent.glob("g.parquet"))
    table = pd.read_parquet(source)
    table["progress"] = 0.0
    table.to_parquet(folder / "g.parquet")
    trajectory = source.parent / "t.h5"
    with pytest.raises(ValueError, match=r"g\.parquet: column 'progress' is not step / 40"):
        derive(folder, folder / "g.parquet", trajectory)
    assert sorted(path.name for path in folder.iterdir()) == ["g.parquet"]


def test_peak_base_keeps_the_fitted_shape_at_the_runs_lr(gradient_descent, tmp_path):
    run, _, _, fitted, _, outputs = gradient_descent
    folder = outputs["s.csv"].parent
    _, document, _, _ = derive(tmp_path, folder / "g.parquet", folder / "t.h5", peak="base")
    derived, shape = np.array(document["lr"]), np.array(fitted["lr"])
    assert derived.max() == pytest.approx(run["lr"], rel=1e-12)
    np.testing.assert_allclose(derived / derived.max(), shape / shape.max(), rtol=1e-12)


@pytest.mark.parametrize("family", ["constant", "warmup_cosine", "warmup_step"])
def test_fit_recovers_a_known_family(family):
    """A family's curve at uneven checkpoints, with 5 % log noise: the fit picks it back."""
    params = {"peak": 0.3, "warmup": 0.15, "decay_end": 0.8, "start": 0.05, "end": 0.01}
    progress = np.concatenate([np.arange(10) / 440, np.arange(10, 420, 10) / 440])
    noise = np.random.default_rng(0).normal(0, 0.05, len(progress))
    log_eta = np.log(schedule_curve(family, params, progress)) + noise
    chosen = choose(fit_families(progress, log_eta, np.gradient(progress)))
    assert chosen["family"] == family
    assert chosen["params"]["peak"] == pytest.approx(0.3, rel=0.1)
    if family != "constant":
        assert chosen["params"]["warmup"] == pytest.approx(0.15, abs=0.03)


@pytest.mark.slow
def test_default_run_eta_star_rises_then_falls(default_run, tmp_path):
    """The paper's warm-up shape on the default digits run (SGD, constant lr): the smoothed eta*
    climbs from its start to a peak inside the first half, then comes down."""
    trajectory, table = default_run
    table.to_parquet(tmp_path / "g.parquet")
    schedule, document, _, _ = derive(tmp_path, tmp_path / "g.parquet", trajectory)
    smooth = schedule.set_index("progress")["eta_smooth"]
    peak_at = smooth.idxmax()
    print(
        f"eta* smoothed: start {smooth.iloc[0]:.3g}, peak {smooth.max():.3g} at {peak_at:.2f}, "
        f"end {smooth.iloc[-1]:.3g}; {document['family']}: {document['params']}"
    )
    assert 0.02 < peak_at < 0.5
    assert smooth.max() > 1.5 * smooth.iloc[0] and smooth.max() > 1.5 * smooth.loc[0.9:].max()
    assert document["family"] != "constant"
    assert set(document["params"]) == {"peak", "warmup", "decay_end", "start", "end"}
    assert document["fit_quality"]["r2_log"] > 0.8


def check_guarantee_columns(table: pd.DataFrame, run: dict, document: dict) -> None:
    """The claims' guarantee columns equal schedule.json's `bound`, and mu, L the min RSI and max
    EB of the geometry table's sampled rows over all but the last `ignore_last` of training."""
    ignore_last = document["ignore_last"]
    values, drawn = run_statistics(table, run, ignore_last)
    bound = document["bound"]
    assert values["guarantee_mu"] == bound["mu"] and values["guarantee_L"] == bound["L"]
    assert values["rsi_positive_share"] == bound["rsi_positive_fraction"]
    rate = bound["rate"] if bound["rate"] is not None else np.nan  # JSON null: no guarantee
    np.testing.assert_equal(values["guarantee_rate"], rate)
    kept = table[(table["source"] == "sampled") & (table["progress"] <= 1 - ignore_last)]
    assert values["guarantee_mu"] == kept["rsi"].min()
    assert values["guarantee_L"] == kept["eb"].max()
    # The robust mu leaves out the worst 1 %: at or above mu, at or below the median RSI.
    assert kept["rsi"].min() <= values["guarantee_mu_robust"] <= kept["rsi"].median()
    for name in ("guarantee_mu", "guarantee_L", "guarantee_mu_robust", "rsi_positive_share"):
        low, high = interval(drawn[name])
        assert low <= high


def test_claims_guarantee_equals_schedule_json(gradient_descent, tmp_path):
    run, _, _, document, _, outputs = gradient_descent
    table = pd.read_parquet(outputs["s.csv"].parent / "g.parquet")
    check_guarantee_columns(table, run, document)


@pytest.mark.slow
def test_claims_guarantee_equals_schedule_json_on_the_default_run(default_run, tmp_path):
    trajectory, table = default_run
    table.to_parquet(tmp_path / "g.parquet")
    _, document, _, _ = derive(tmp_path, tmp_path / "g.parquet", trajectory)
    run = expand_runs(validate_config({}, SCHEMA))["base"]
    check_guarantee_columns(table, run, document)
    print(f"default base run: {document['bound']}")
