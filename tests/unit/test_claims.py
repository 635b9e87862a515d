"""The claims table, each column computed from hand-made geometry tables with known answers."""

import numpy as np
import pandas as pd
import pytest
from helpers.runs import SCHEMA

from nowrongturns.config import expand_runs, validate_config
from nowrongturns.report.claims import claim_statements, claims_table, write_claims
from nowrongturns.report.run_statistics import run_statistics

# As the workflow passes it (RUNS_CONFIG): the runs' part of the config alone.
CONFIG = {
    key: value
    for key, value in validate_config(
        {
            "ablations": {"batch_size": [16, 256], "seed": [1]},
            "runs": {"valley": {"task": "rosenbrock", "model": "point"}},
        },
        SCHEMA,
    ).items()
    if key in ("base", "ablations", "runs", "data")
}
TOTAL_STEPS = 20
ROOT_D = 10  # d = 100 parameters: z = 10 gamma


def geometry(
    run: str,
    checkpoints: dict[int, dict[str, list[float]]],
    other: float = np.nan,
    origin: float = 0.01,
) -> pd.DataFrame:
    """The sampled rows of a geometry table: step -> column -> one value per sampled minibatch;
    the controls gamma_other and gamma_origin the same at every row."""
    rows = []
    for step, columns in checkpoints.items():
        for sample, (gamma, rsi, eb) in enumerate(
            zip(*(columns[c] for c in ("gamma", "rsi", "eb")))
        ):
            row = {"run": run, "step": step, "progress": step / TOTAL_STEPS, "source": "sampled"}
            rows.append(
                row
                | {
                    "sample": sample,
                    "gamma": gamma,
                    "z": ROOT_D * gamma,
                    "rsi": rsi,
                    "eb": eb,
                    "gamma_other": other,
                    "gamma_origin": origin,
                }
            )
    table = pd.DataFrame(rows)
    # Rows of other sources must not count: one full-batch row, far off, at each checkpoint.
    others = table.drop_duplicates("step").assign(
        source="full_batch", gamma=-1.0, rsi=-9.0, eb=99.0
    )
    return pd.concat([table, others], ignore_index=True)


def constant(run: str, gamma: float, **controls) -> pd.DataFrame:
    """A run whose sampled minibatches have gamma `gamma` -+ 10 % (median and mean `gamma`; a
    spread, as a minibatch gradient has), RSI 1 and EB 1."""
    spread = [gamma * 0.9, gamma * 1.1]
    checkpoints = {s: {"gamma": spread, "rsi": [1, 1], "eb": [1, 1]} for s in (0, 10)}
    return geometry(run, checkpoints, **controls)


# Steps 0, 2, 10, 18, 19 of 20: progress 0, 0.1, 0.5, 0.9 and 0.95, two sampled minibatches each.
BASE = geometry(
    "base",
    {
        0: {"gamma": [-0.2, 0.4], "rsi": [100, 100], "eb": [100, 100]},
        2: {"gamma": [0.2, 0.2], "rsi": [1, 3], "eb": [1, 1]},
        10: {"gamma": [0.1, 0.3], "rsi": [1, 1], "eb": [3, 3]},
        18: {"gamma": [0.2, 0.4], "rsi": [4, 4], "eb": [1, 1]},
        19: {"gamma": [-0.5, -0.5], "rsi": [100, 100], "eb": [100, 100]},
    },
    other=0.05,
)
# A wrong turn: a checkpoint where the median RSI is negative.
VALLEY = geometry(
    "valley",
    {
        s: {"gamma": [g, g], "rsi": [r, r], "eb": [1, 1]}
        for s, g, r in [(2, -0.5, -1), (10, 0.5, 1)]
    },
)
TABLES = {
    "base": BASE,
    "batch_size=16": constant("batch_size=16", 0.5),
    "batch_size=256": constant("batch_size=256", 0.01),
    "seed=1": constant("seed=1", 1.0, other=0.1, origin=-0.3),
    "valley": VALLEY,
}
FITTED = {"warmup": 0.1, "start": 0.1, "end": 0.01, "decay_end": 1.0, "peak": 0.1}
SCHEDULES = {
    "base": {"run": "base", "family": "warmup_cosine", "params": FITTED},
    "valley": {"run": "valley"},
}


@pytest.fixture(scope="module")
def table() -> pd.DataFrame:
    # Every row weighs alike, so that each expected value below is a count over minibatches;
    # the weights by share of training have their own test at the end.
    return claims_table(TABLES, SCHEDULES, CONFIG, weighted=False)


def test_one_row_per_run_with_its_settings(table):
    assert list(table.index) == ["base", "batch_size=16", "batch_size=256", "seed=1", "valley"]
    assert table.loc["batch_size=16", "batch_size"] == 16
    assert table.loc["valley", "task"] == "rosenbrock" and table.loc["seed=1", "seed"] == 1


def test_share_of_positive_gamma_over_the_first_95_percent(table):
    # Steps 0..18: 7 of 8 sampled gammas > 0; step 19 (t/T = 0.95, both negative) is left out.
    assert table.loc["base", "gamma_positive_share"] == pytest.approx(7 / 8)
    assert table.loc["valley", "gamma_positive_share"] == pytest.approx(0.5)
    assert table.loc["seed=1", "gamma_positive_share"] == 1


def test_median_and_mean_over_every_sampled_minibatch(table):
    # base's ten gammas: -0.5 -0.5 -0.2 0.1 0.2 0.2 0.2 0.3 0.4 0.4
    assert table.loc["base", "median_gamma"] == pytest.approx(0.2)
    assert table.loc["base", "median_z"] == pytest.approx(2.0)
    assert table.loc["base", "mean_gamma"] == pytest.approx(0.06)


def test_the_controls_beside_gamma(table):
    controls = ["median_gamma", "median_gamma_other", "median_gamma_origin"]
    assert table.loc["base", controls].tolist() == pytest.approx([0.2, 0.05, 0.01])
    assert table["median_gamma_other"].drop(["base", "seed=1"]).isna().all()
    statement = claim_statements(table, CONFIG).set_index("claim").loc["controls", "our runs"]
    assert statement.startswith(
        "median γ / γ_other / γ_origin: base 0.200 [0.100, 0.250] / 0.050 [0.050, 0.050] / "
        "0.010 [0.010, 0.010]; seed=1 1.000 [0.900, 1.100] / 0.100"
    )
    assert statement.endswith("to 0.010 [0.010, 0.010] (base).")


def test_rsi_and_eb_factors_over_the_middle_80_percent(table):
    # Checkpoint medians at t/T = 0.1, 0.5, 0.9 (0 and 0.95 are outside): RSI 2, 1, 4 around
    # their median 2, at most 2 apart; EB 1, 3, 1 around 1, 3 apart.
    assert table.loc["base", "rsi_max_factor"] == pytest.approx(2.0)
    assert table.loc["base", "eb_max_factor"] == pytest.approx(3.0)
    # Resampling the minibatches at t/T = 0.1 (RSI 1 or 3): its median 1, 2 or 3, the factor
    # between 1.5 and 2.5 (the median of 1, 2, 4 is 2 or of 3, 1, 4 is 3; of 1, 1, 4 ... 1).
    assert 1.5 <= table.loc["base", "rsi_max_factor_low"] <= 2.0
    assert table.loc["base", "rsi_max_factor_high"] >= 2.0
    # A negative RSI is not within any factor of a positive median.
    assert table.loc["valley", "rsi_max_factor"] == np.inf
    # Three checkpoints in the middle 80 %: too few to call anything stable.
    assert (table["middle_checkpoints"] <= 3).all()
    assert (table["verdict_stable"] == "undefined (too few checkpoints)").all()


def test_stability_verdict_by_the_interval_of_the_factor():
    progress = np.linspace(0.1, 0.9, 9)
    steps = (progress * TOTAL_STEPS * 10).round().astype(int)

    def run(name, eb_middle):
        checkpoints = {
            int(s): {"gamma": [0.1, 0.2], "rsi": [1, 1.1], "eb": [e, e * 1.1]}
            for s, e in zip(steps, [1, 1, 1, 1, eb_middle, 1, 1, 1, 1])
        }
        table = geometry(name, checkpoints)
        table["progress"] = table["step"] / (TOTAL_STEPS * 10)
        return table

    tables = {name: run(name, eb) for name, eb in (("steady", 1.5), ("jumpy", 5.0))}
    config = validate_config({"ablations": {"seed": [1]}}, SCHEMA)
    tables = {"base": tables["steady"].assign(run="base"), "seed=1": tables["jumpy"]}
    table = claims_table(tables, {}, config)
    assert table.loc["base", "verdict_stable"] == "holds"
    assert table.loc["seed=1", "verdict_stable"] == "does not hold"
    assert table.loc["seed=1", "eb_max_factor"] == pytest.approx(5.0)


def test_batch_size_levels_with_intervals_over_seeds_and_minibatches(table):
    # Level 64 is base and seed=1: (0.06 + 1.0) / 2 = 0.53, above 16's 0.5 and 256's 0.01.
    means = table["batch_size_mean_gamma"]
    assert means.drop("valley").to_dict() == pytest.approx(
        {"base": 0.53, "batch_size=16": 0.5, "batch_size=256": 0.01, "seed=1": 0.53}
    )
    assert pd.isna(means["valley"])  # at no level of the batch_size ablation
    # Resampling level 64's two seeds gives draws from base's alone (about 0.06) to seed=1's
    # alone (1.0): the increase from 16 is within -0.5 and 0.5, and so includes 0.
    increase = table.loc[
        "base", ["batch_size_gamma_increase_low", "batch_size_gamma_increase_high"]
    ]
    assert -0.6 < increase.iloc[0] < 0 < increase.iloc[1] < 0.6
    assert pd.isna(table.loc["batch_size=16", "batch_size_gamma_increase"])
    assert (table["verdict_batch_size"].drop("valley") == "not shown").all()
    statement = claim_statements(table, CONFIG).set_index("claim").loc["batch_size"]
    assert "16 (1 seed): 0.500 [0.450, 0.550]; 64 (2 seeds): 0.530" in statement["our runs"]
    assert statement["our runs"].endswith("not shown: an interval of a difference includes 0.")
    assert statement["verdict"] == "not shown"


def spread_run(name: str, gamma: float, rng) -> pd.DataFrame:
    """A run of 10 checkpoints x 8 sampled minibatches, gamma ~ N(gamma, 0.05)."""
    checkpoints = {
        step: {"gamma": list(rng.normal(gamma, 0.05, 8)), "rsi": [1] * 8, "eb": [1] * 8}
        for step in range(0, 20, 2)
    }
    return geometry(name, checkpoints)


@pytest.mark.parametrize(
    ("gammas", "verdict"),
    [
        ((0.1, 0.1, 0.1), "not shown"),
        ((0.1, 0.2, 0.3), "holds"),
        ((0.3, 0.2, 0.1), "does not hold"),
    ],
)
def test_batch_size_statement_by_the_intervals_of_neighbouring_differences(gammas, verdict):
    rng = np.random.default_rng(0)
    config = validate_config({"ablations": {"batch_size": [16, 256]}}, SCHEMA)
    names = ["batch_size=16", "base", "batch_size=256"]
    tables = {name: spread_run(name, gamma, rng) for name, gamma in zip(names, gammas)}
    table = claims_table(tables, {}, config)
    assert (table["verdict_batch_size"] == verdict).all()
    statement = claim_statements(table, config).set_index("claim").loc["batch_size"]
    assert statement["verdict"] == verdict
    if verdict == "not shown":
        assert statement["our runs"].endswith("not shown: an interval of a difference includes 0.")
    if verdict == "holds":
        assert statement["our runs"].endswith("γ grows with batch size.")


def test_schedule_family_and_shape_from_schedule_json_or_empty(table):
    assert table.loc["base", "schedule_family"] == "warmup_cosine"
    assert table["schedule_family"].drop("base").isna().all()
    # Starts at 0.1 and ends at 0.01 of its peak 0.1, twice the lr 0.05: a warm-up and a decay.
    assert table.loc["base", ["schedule_warmup", "schedule_decay"]].tolist() == [True, True]
    assert table.loc["base", "schedule_peak_over_lr"] == pytest.approx(2.0)
    assert table.loc["base", "verdict_schedule"] == "holds"
    assert table.loc["valley", "verdict_schedule"] == "undefined (no schedule fitted)"
    statements = claim_statements(table, CONFIG).set_index("claim")["our runs"]
    assert statements["schedule"] == (
        "base warmup_cosine (warm-up yes, decay yes, fitted peak 2 × the lr used)."
    )
    # 7 of 8 for base, 1 of 2 for valley: the runs below 100 %, by name, with intervals.
    assert statements["no_wrong_turns"].endswith(
        "of 5 runs; in the others: base 87.5% [75.0%, 100%]; valley 50.0% [50.0%, 50.0%]."
    )


def test_the_guarantee_per_run_with_its_verdict(table):
    # base over t/T <= 0.95: RSI 100 100 1 3 1 1 4 4 100 100 -> mu 1, EB up to 100.
    assert table.loc["base", ["guarantee_mu", "guarantee_L"]].tolist() == [1, 100]
    assert table.loc["base", "guarantee_rate"] == pytest.approx(1 - 1e-4)
    assert table.loc["valley", "guarantee_mu"] == -1
    assert pd.isna(table.loc["valley", "guarantee_rate"])
    assert table.loc["valley", "rsi_positive_share"] == 0.5
    assert table.loc["valley", "verdict_guarantee"] == "does not hold"
    assert table.loc["base", "verdict_guarantee"] == "holds"
    for column in ("guarantee_mu", "guarantee_L", "guarantee_mu_robust", "rsi_positive_share"):
        assert table[f"{column}_low"].le(table[f"{column}_high"]).all()


def test_every_numeric_claim_has_its_interval(table):
    numeric = [
        column
        for column in table.columns
        if table[column].dtype.kind == "f"
        and not column.endswith(("_low", "_high"))
        and column not in ("lr", "schedule_peak_over_lr")
    ]
    assert {"median_gamma", "guarantee_mu_robust", "batch_size_mean_gamma"} <= set(numeric)
    for column in numeric:
        assert f"{column}_low" in table and f"{column}_high" in table, column


def test_claims_csv_and_html_hold_the_table(tmp_path, table):
    csv, html = tmp_path / "claims.csv", tmp_path / "claims.html"
    write_claims(TABLES, [], CONFIG, csv, html)
    written = pd.read_csv(csv, index_col="run")
    assert list(written.columns) == list(table.columns)
    # Weighted by share of training, as the workflow writes it: steps 0, 2, 10, 18 of 20 stand
    # for 0.1, 0.4, 0.4 and 0.05 (step 19 is past the first 95 %); all positive but one
    # minibatch of step 0: 0.9 of the 0.95.
    assert written.loc["base", "gamma_positive_share"] == pytest.approx(0.9 / 0.95)
    page = html.read_text()
    assert "The paper's claims beside our runs" in page and "valley" in page
    assert "&lt;NA&gt;" not in page and "nan" not in page.replace("nano", "")
    assert not list(tmp_path.glob(".*"))  # no temporary file left


def test_a_run_without_its_geometry_is_named():
    tables = {run: table for run, table in TABLES.items() if run != "seed=1"}
    with pytest.raises(ValueError, match="seed=1"):
        claims_table(tables, {}, CONFIG)


def straight_path(run: str, losses: dict[int, list[float]]) -> pd.DataFrame:
    """An interpolation table: step -> the loss at alpha 0, 0.5, 1."""
    return pd.DataFrame(
        [
            {"run": run, "step": step, "alpha": alpha, "loss": loss}
            for step, values in losses.items()
            for alpha, loss in zip((0.0, 0.5, 1.0), values)
        ]
    )


def test_the_straight_path_columns_and_statement_where_interpolation_is_on():
    descending = {0: [2.0, 1.0, 0.5], 10: [1.0, 0.7, 0.5]}
    interpolations = {run: straight_path(run, descending) for run in TABLES}
    # valley: the segment from step 2 rises by 0.5 above its start (25 % of it), then falls
    interpolations["valley"] = straight_path("valley", {2: [2.0, 2.5, 0.5], 10: [1.0, 0.8, 0.5]})
    table = claims_table(TABLES, SCHEDULES, CONFIG, interpolations)
    assert table["monotone_share"].to_dict() == {
        run: 1.0 if run != "valley" else 0.5 for run in TABLES
    }
    assert table.loc["valley", "largest_bump"] == pytest.approx(0.5)
    assert table.loc["valley", "largest_bump_relative"] == pytest.approx(0.25)
    statement = claim_statements(table, CONFIG)["our runs"].iloc[-1]
    assert statement == (
        "monotone at every measured checkpoint in 4 of 5 runs; in the others: valley 50.0% "
        "(largest rise 0.5, 25.0% of its segment's starting loss)."
    )
    with pytest.raises(ValueError, match=r"no interpolation table of run \['valley'\]"):
        claims_table(TABLES, SCHEDULES, CONFIG, {run: interpolations[run] for run in RUNS_ON_DATA})
    # Without the analysis, neither the columns nor the statement.
    plain = claims_table(TABLES, SCHEDULES, CONFIG)
    assert "monotone_share" not in plain and len(claim_statements(plain, CONFIG)) == 7


RUNS_ON_DATA = ["base", "batch_size=16", "batch_size=256", "seed=1"]


def test_a_checkpoint_weighs_the_share_of_training_it_stands_for():
    """Ten dense checkpoints (steps 0..9 of 100) where gamma < 0, then one at step 10, standing
    for the 90 steps to the end, where gamma > 0: gamma is positive over 90 % of training,
    though over 1 checkpoint of 11."""
    checkpoints = {s: {"gamma": [-0.1], "rsi": [1], "eb": [1]} for s in range(10)}
    checkpoints[10] = {"gamma": [0.3], "rsi": [1], "eb": [1]}
    table = geometry("base", checkpoints).assign(progress=lambda t: t["step"] / 100)
    run = expand_runs(CONFIG)["base"]
    claims, _ = run_statistics(table, run, ignore_last=0.05)
    assert claims["gamma_positive_share"] == pytest.approx(0.9)
    assert claims["mean_gamma"] == pytest.approx(0.1 * -0.1 + 0.9 * 0.3)
    assert claims["median_gamma"] > 0
    unweighted, _ = run_statistics(table, run, ignore_last=0.05, weighted=False)
    assert unweighted["gamma_positive_share"] == pytest.approx(1 / 11)
