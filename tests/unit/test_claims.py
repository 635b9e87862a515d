"""The claims table, each column computed from hand-made geometry tables with known answers."""

import numpy as np
import pandas as pd
import pytest
from helpers.runs import SCHEMA

from nowrongturns.config import validate_config
from nowrongturns.report.claims import claim_statements, claims_table, run_claims, write_claims

CONFIG = validate_config(
    {
        "ablations": {"batch_size": [16, 256], "seed": [1]},
        "runs": {"valley": {"task": "rosenbrock", "model": "point"}},
    },
    SCHEMA,
)
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
    """A run whose every sampled minibatch has the same gamma, RSI 1 and EB 1."""
    checkpoints = {s: {"gamma": [gamma] * 2, "rsi": [1, 1], "eb": [1, 1]} for s in (0, 10)}
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
SCHEDULES = {"base": {"run": "base", "family": "warmup_cosine"}, "valley": {"run": "valley"}}


@pytest.fixture(scope="module")
def table() -> pd.DataFrame:
    return claims_table(TABLES, SCHEDULES, CONFIG)


def test_one_row_per_run_with_its_settings(table):
    assert list(table.index) == ["base", "batch_size=16", "batch_size=256", "seed=1", "valley"]
    assert table.loc["batch_size=16", "batch_size"] == 16
    assert table.loc["valley", "task"] == "rosenbrock" and table.loc["seed=1", "seed"] == 1


def test_share_of_positive_gamma_over_the_first_95_percent(table):
    # Each checkpoint weighs the share of training up to the next: steps 0, 2, 10, 18 of 20 stand
    # for 0.1, 0.4, 0.4 and 0.05; step 19 (t/T = 0.95, both negative) is left out. All positive
    # but one minibatch of step 0: 0.9 of the 0.95.
    assert table.loc["base", "gamma_positive_share"] == pytest.approx(0.9 / 0.95)
    # Negative at step 2 (0.4 of training), positive at step 10 (the last, up to w*: 0.5).
    assert table.loc["valley", "gamma_positive_share"] == pytest.approx(0.5 / 0.9)
    assert table.loc["seed=1", "gamma_positive_share"] == 1


def test_median_and_mean_over_every_sampled_minibatch_weighted_by_share_of_training(table):
    # base's ten gammas and each one's weight (its checkpoint's share over its 2 minibatches):
    # -0.5 -0.5 (0.025) -0.2 (0.05) 0.1 (0.2) 0.2 0.2 (0.2) 0.2 (0.025) 0.3 (0.2) 0.4 (0.05)
    # 0.4 (0.025): half the weight is at or below 0.2.
    assert table.loc["base", "median_gamma"] == pytest.approx(0.2)
    assert table.loc["base", "median_z"] == pytest.approx(2.0)
    assert table.loc["base", "mean_gamma"] == pytest.approx(0.16)


def test_a_checkpoint_weighs_the_share_of_training_it_stands_for():
    """Ten dense checkpoints (steps 0..9 of 100) where gamma < 0, then one at step 10, standing
    for the 90 steps to the end, where gamma > 0: gamma is positive over 90 % of training,
    though over 1 checkpoint of 11."""
    checkpoints = {s: {"gamma": [-0.1], "rsi": [1], "eb": [1]} for s in range(10)}
    checkpoints[10] = {"gamma": [0.3], "rsi": [1], "eb": [1]}
    table = geometry("base", checkpoints).assign(progress=lambda t: t["step"] / 100)
    claims = run_claims(table)
    assert claims["gamma_positive_share"] == pytest.approx(0.9)
    assert claims["mean_gamma"] == pytest.approx(0.1 * -0.1 + 0.9 * 0.3)
    assert claims["median_gamma"] == pytest.approx(0.3)


def test_the_controls_beside_gamma(table):
    controls = ["median_gamma", "median_gamma_other", "median_gamma_origin"]
    assert table.loc["base", controls].tolist() == pytest.approx([0.2, 0.05, 0.01])
    assert table["median_gamma_other"].drop(["base", "seed=1"]).isna().all()
    statement = claim_statements(table, CONFIG)["our runs"][5]
    assert statement == (
        "median γ / γ_other / γ_origin: base 0.200 / 0.050 / 0.010; seed=1 1.000 / 0.100 / "
        "-0.300; over all runs, median γ_origin from -0.300 (seed=1) to 0.010 (base)."
    )


def test_rsi_and_eb_within_a_factor_of_2_over_the_middle_80_percent(table):
    # Checkpoint medians at t/T = 0.1, 0.5, 0.9 (0 and 0.95 are outside): RSI 2, 1, 4 around
    # their median 2, at most 2 apart; EB 1, 3, 1 around 1, 3 apart.
    assert table.loc["base", "rsi_max_factor"] == pytest.approx(2.0)
    assert table.loc["base", "rsi_within_2x"]
    assert table.loc["base", "eb_max_factor"] == pytest.approx(3.0)
    assert not table.loc["base", "eb_within_2x"]
    # A negative RSI is not within any factor of a positive median.
    assert table.loc["valley", "rsi_max_factor"] == np.inf
    assert not table.loc["valley", "rsi_within_2x"]


def test_batch_size_levels_ranked_by_mean_gamma_averaged_over_seeds(table):
    # Level 64 is base and seed=1: (0.16 + 1.0) / 2 = 0.58, above 16's 0.5 and 256's 0.01.
    ranks = table["batch_size_gamma_rank"]
    assert ranks.drop("valley").to_dict() == {
        "base": 3,
        "batch_size=16": 2,
        "batch_size=256": 1,
        "seed=1": 3,
    }
    assert pd.isna(ranks["valley"])  # at no level of the batch_size ablation
    statements = claim_statements(table, CONFIG)
    batch = statements.loc[3, "our runs"]
    assert "16: 0.500, 64: 0.580, 256: 0.010" in batch and "not increasing" in batch


def test_schedule_family_from_schedule_json_or_empty(table):
    assert table.loc["base", "schedule_family"] == "warmup_cosine"
    assert table["schedule_family"].drop("base").isna().all()
    statements = claim_statements(table, CONFIG)["our runs"]
    assert statements[4] == "fitted family: base warmup_cosine."
    # 0.9 of 0.95 for base, 0.5 of 0.9 for valley: the runs below 100 %, by name.
    assert statements[0].endswith("of 5 runs; in the others: base 94.7%, valley 55.6%.")


def test_claims_csv_and_html_hold_the_table(tmp_path, table):
    csv, html = tmp_path / "claims.csv", tmp_path / "claims.html"
    write_claims(TABLES, [], CONFIG, csv, html)
    written = pd.read_csv(csv, index_col="run")
    assert list(written.columns) == list(table.columns)
    assert written.loc["base", "gamma_positive_share"] == pytest.approx(0.9 / 0.95)
    page = html.read_text()
    assert "The paper's claims beside our runs" in page and "valley" in page
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
    assert "monotone_share" not in plain and len(claim_statements(plain, CONFIG)) == 6


RUNS_ON_DATA = ["base", "batch_size=16", "batch_size=256", "seed=1"]
