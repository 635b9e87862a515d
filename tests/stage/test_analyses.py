"""The analyses along the path (analyses/, docs/analyses.md): on the synthetic objectives whose
answer is known, against the stored weights, and in the real workflow."""

import copy

import numpy as np
import pandas as pd
import pytest
import yaml
from helpers.runs import REPO, SCHEMA, TINY_BASE, stored, tiny_run
from helpers.workflow import Workflow

from nowrongturns.analyses.interpolation import (
    interpolate,
    largest_rises,
    monotone_summary,
    refine,
)
from nowrongturns.analyses.orthogonal import orthogonal
from nowrongturns.analyses.plane import plane
from nowrongturns.analyses.sharpness import sharpness
from nowrongturns.config import ConfigError, expand_runs, validate_config
from nowrongturns.tasks.synthetic import quadratic_problem
from nowrongturns.train.stage import train

DEFAULT_RUNS = expand_runs(
    validate_config(yaml.safe_load((REPO / "config.yaml").read_text()), SCHEMA)
)
EVERYTHING = 10**9  # examples: the whole training set


@pytest.fixture(scope="module")
def quadratic(tmp_path_factory):
    """config.yaml's quadratic run, trained: (run, trajectory)."""
    run = DEFAULT_RUNS["quadratic"]
    trajectory = tmp_path_factory.mktemp("quadratic") / "trajectory.h5"
    train(run, trajectory, device="cpu", run_name="quadratic")
    return run, trajectory


def test_quadratic_sharpness_is_the_largest_eigenvalue_of_a_everywhere(quadratic, tmp_path):
    run, trajectory = quadratic
    _, _, hessian, _ = quadratic_problem(run["width"])
    assert np.linalg.eigvalsh(hessian)[-1] == pytest.approx(1.0, rel=1e-12)
    table = sharpness(
        trajectory, tmp_path / "sharpness.parquet", "quadratic", examples=EVERYTHING, device="cpu"
    )
    assert len(table) == len(stored(trajectory)["checkpoint_steps"]) - 1
    np.testing.assert_allclose(table["lambda_max"], 1.0, rtol=1e-4)
    np.testing.assert_allclose(table["threshold"], 2 / run["lr"])  # plain SGD
    assert (table["iterations"] <= 20).all()
    assert pd.read_parquet(tmp_path / "sharpness.parquet").equals(table)


def test_quadratic_interpolation_is_the_closed_form_and_convex(quadratic, tmp_path):
    run, trajectory = quadratic
    inputs, targets, hessian, minimum = quadratic_problem(run["width"])
    weights = stored(trajectory)["weights"]  # float64 of the stored float32

    def f(w):  # the closed form, 1/2 (w - c)^T A (w - c)
        return 0.5 * (w - minimum) @ hessian @ (w - minimum)

    # The full training set is that closed form: least squares on inputs of second moment A.
    residual = inputs.astype(np.float64) @ weights[0] - targets
    assert 0.5 * np.mean(residual**2) == pytest.approx(f(weights[0]), rel=1e-6)

    table = interpolate(
        trajectory,
        tmp_path / "interpolation.parquet",
        "quadratic",
        examples=EVERYTHING,
        device="cpu",
    )
    assert sorted(table["alpha"].unique()) == pytest.approx(np.linspace(0, 1, 11))
    for index, (step, rows) in enumerate(table.groupby("step")):
        rows = rows.sort_values("alpha")
        points = [weights[index] + a * (weights[-1] - weights[index]) for a in rows["alpha"]]
        expected = [f(np.float32(point).astype(np.float64)) for point in points]
        np.testing.assert_allclose(rows["loss"], expected, rtol=1e-6, err_msg=f"step {step}")
        second = np.diff(rows["loss"].to_numpy(), 2)  # convex along alpha: f is a quadratic
        assert (second >= -1e-6 * rows["loss"].max()).all(), step
    summary = monotone_summary(table)
    assert summary["checkpoints"] == len(weights) - 1


def test_rosenbrock_straight_path_is_not_monotone_somewhere(tmp_path):
    run = DEFAULT_RUNS["rosenbrock"]  # 2000 steps; the first hundreds stay on the straight part
    trajectory = tmp_path / "trajectory.h5"
    train(run, trajectory, device="cpu", run_name="rosenbrock")
    table = interpolate(trajectory, tmp_path / "interpolation.parquet", "rosenbrock", device="cpu")
    summary = monotone_summary(table)
    assert summary["monotone"] < 1
    assert summary["largest_bump"] > 1e-3 * table["loss"].max()
    # The summary agrees with the table: the worst segment does climb by that much.
    worst = table[table["step"] == summary["largest_bump_step"]].sort_values("alpha")["loss"]
    assert (worst.cummax() - worst.cummin()).max() >= summary["largest_bump"]


@pytest.mark.slow
def test_refined_rosenbrock_interpolation_finds_higher_rises_than_the_grid(tmp_path):
    run = DEFAULT_RUNS["rosenbrock"]  # 2000 steps: the valley's bouncing, where segments rise
    trajectory = tmp_path / "trajectory.h5"
    train(run, trajectory, device="cpu", run_name="rosenbrock")
    grid = interpolate(trajectory, tmp_path / "grid.parquet", "r", device="cpu")
    out = tmp_path / "refined.parquet"
    refined = interpolate(trajectory, out, "r", refine_to=0.01, device="cpu")
    assert pd.read_parquet(out).attrs["resolution"]["asked"] == 0.01
    assert refined.attrs["resolution"]["reached"] <= 0.01
    coarse, fine = largest_rises(grid), largest_rises(refined)
    assert (fine >= coarse).all()  # the grid's points are all still there
    assert (fine > 1.001 * coarse).sum() >= 3  # peaks between the grid's points
    assert not np.isin(refined["alpha"], grid["alpha"]).all()


def test_refinement_finds_a_bump_narrower_than_the_grid():
    """A descent with a bump of width 0.02 in alpha between two grid points: 11 points read a
    monotone curve; refined to 0.001, the rise is found, to within the slope over 0.001."""

    def loss(alpha: float) -> float:
        return 1 - alpha + 0.3 * max(0.0, 1 - abs(alpha - 0.553) / 0.01)

    grid = np.linspace(0, 1, 11).tolist()
    coarse = pd.DataFrame({"step": 0, "alpha": grid, "loss": [loss(a) for a in grid]})
    assert monotone_summary(coarse)["monotone"] == 1
    alphas, losses, reached = refine(loss, grid, coarse["loss"].tolist(), 0.001)
    assert reached <= 0.001 and len(alphas) < 60  # bisected near the bump, not everywhere
    fine = pd.DataFrame({"step": 0, "alpha": alphas, "loss": losses})
    summary = monotone_summary(fine)
    assert summary["monotone"] == 0
    # The true rise: from 1 - 0.543 at the bump's foot to 1 - 0.553 + 0.3 at its peak.
    assert summary["largest_bump"] == pytest.approx(0.29, abs=0.01)


def test_monotone_summary_finds_a_bump_and_ignores_rounding():
    alphas = np.linspace(0, 1, 11)
    falling = 1 - alphas + 1e-9 * np.sin(40 * alphas)  # a rise of 1e-9: float32 rounding
    bumped = (1 - alphas) + 0.2 * (alphas == 0.5)
    table = pd.DataFrame(
        {
            "step": np.repeat([0, 10], 11),
            "alpha": np.tile(alphas, 2),
            "loss": np.concatenate([falling, bumped]),
        }
    )
    summary = monotone_summary(table)
    assert summary["monotone"] == 0.5
    assert summary["largest_bump_step"] == 10
    assert summary["largest_bump"] == pytest.approx(0.1)  # 0.7 at alpha 0.5 after 0.6 at 0.4


def test_orthogonal_cosines_are_those_of_the_stored_steps(tmp_path):
    """Plain SGD, every step a checkpoint: g_t = (w_t - w_{t+1}) / lr_t from the stored weights
    gives the cosines and distances the replay found."""
    run = tiny_run(checkpoint={"dense_first": 44, "every": 10})
    trajectory = tmp_path / "trajectory.h5"
    train(run, trajectory, device="cpu", run_name="tiny")
    saved = stored(trajectory)
    weights, lrs = saved["weights"], saved["lr"]
    assert list(saved["checkpoint_steps"]) == list(range(45))
    table = orthogonal(trajectory, tmp_path / "orthogonal.parquet", "tiny", device="cpu")
    assert set(table["k"]) == {1, 2, 5, 10, 20}  # 50 is past the 44 steps
    assert (table["step"] + table["k"] < 44).all()
    assert len(table) == sum(44 - k for k in (1, 2, 5, 10, 20))

    def part(t):
        gradient, to_final = (weights[t] - weights[t + 1]) / lrs[t], weights[t] - weights[-1]
        return gradient - (gradient @ to_final) / (to_final @ to_final) * to_final

    parts = [part(t) for t in range(44)]
    # The last step's gradient is w_43 - w* over lr, parallel to it: its orthogonal part is
    # rounding, 0 from the stored weights, float32 noise in the replay. Every other step counts.
    checked = table[table["step"] + table["k"] < 43]
    assert len(checked) == len(table) - 5
    for row in checked.itertuples():
        first, second = parts[row.step], parts[row.step + row.k]
        cosine = first @ second / (np.linalg.norm(first) * np.linalg.norm(second))
        assert row.cosine == pytest.approx(cosine, abs=1e-5), (row.step, row.k)
        distance = np.linalg.norm(weights[row.step] - weights[row.step + row.k])
        assert row.distance == pytest.approx(distance, rel=1e-6), (row.step, row.k)


def test_plane_projects_the_checkpoints_and_spans_them(tmp_path):
    trajectory = tmp_path / "trajectory.h5"
    train(tiny_run(), trajectory, device="cpu", run_name="tiny")
    table = plane(trajectory, tmp_path / "plane.parquet", "tiny", grid=5, examples=64, device="cpu")
    weights = stored(trajectory)["weights"]
    checkpoints = table[table["kind"] == "checkpoint"]
    grid = table[table["kind"] == "grid"]
    assert len(checkpoints) == len(weights) and len(grid) == 25
    # Projections and what is left off the plane make up each ||w_t - w*||.
    distance = np.linalg.norm(weights - weights[-1], axis=1)
    in_plane = np.hypot(checkpoints["x"], checkpoints["y"])
    np.testing.assert_allclose(
        np.hypot(in_plane, checkpoints["off_plane"]), distance, rtol=1e-6, atol=1e-9
    )
    assert checkpoints["x"].iloc[0] > 0 and checkpoints.iloc[-1][["x", "y"]].abs().max() < 1e-9
    assert grid["x"].min() < checkpoints["x"].min() and grid["x"].max() > checkpoints["x"].max()
    shares = pd.read_parquet(tmp_path / "plane.parquet").attrs["explained_variance"]
    assert shares[0] >= shares[1] > 0 and sum(shares) <= 1 + 1e-9


ALL_ON = {
    "interpolation": {"examples": 64},
    "sharpness": {"examples": 64, "iterations": 4},
    "plane": {"grid": 4, "examples": 64},
    "orthogonal": {"lags": [1, 2, 5]},
}


@pytest.mark.slow
def test_workflow_runs_every_analysis_and_a_setting_reruns_only_its_own(tmp_path):
    config = {
        "base": TINY_BASE,
        "measure": {"samples": 2},
        "schedule": {"retrain": False},
        "analyses": ALL_ON,
    }
    flow = Workflow(tmp_path, config)
    flow.snakemake()
    for name in ALL_ON:
        table = pd.read_parquet(tmp_path / f"results/runs/base/{name}.parquet")
        assert len(table) > 0, name
        assert (tmp_path / f"results/figures/base/{name}.png").stat().st_size > 0, name
        assert (tmp_path / f"results/logs/{name}/base.log").exists(), name
        assert (tmp_path / f"results/benchmarks/{name}/base.tsv").exists(), name
    changed = copy.deepcopy(config)
    changed["analyses"]["sharpness"]["iterations"] = 5
    variant = flow.write_config("sharpness.yaml", changed)
    assert flow.planned_jobs("--configfile", str(variant)) == {
        ("sharpness", "base"),
        ("figures", "base"),
    }


@pytest.mark.parametrize(
    "analyses, named",
    [
        ({"curvature": True}, "curvature"),
        ({"sharpness": {"iteratons": 5}}, "iteratons"),
        ({"interpolation": {"points": 5}}, "analyses.interpolation.points"),
        ({"plane": 21}, "analyses.plane"),
    ],
)
def test_config_refuses_an_unknown_analysis_or_setting_naming_it(analyses, named):
    with pytest.raises(ConfigError, match=named.replace(".", r"\.")):
        validate_config({"analyses": analyses}, SCHEMA)


def test_an_analysis_switched_on_takes_its_default_settings():
    analyses = validate_config({"analyses": {"sharpness": True}}, SCHEMA)["analyses"]
    assert analyses["sharpness"] == {
        "examples": 512,
        "iterations": 20,
        "tolerance": 1e-4,
        "batches": 4,
    }
    assert analyses["interpolation"] == {
        "points": 11,
        "examples": 128,
        "refine": True,
        "resolution": 0.01,
    }
    assert analyses["plane"] is False and analyses["orthogonal"] is False
