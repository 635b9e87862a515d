"""What the figures draw, read back from the matplotlib objects: lines per level, seed bands,
colours that follow a run from figure to figure, the baselines and z."""

import matplotlib
import numpy as np
import pandas as pd
import pytest
from helpers.runs import SCHEMA

from nowrongturns.config import validate_config
from nowrongturns.report.comparisons import ablation_figure, contrast_figure
from nowrongturns.report.figures import bound_figure, draw_run_figures, geometry_figure
from nowrongturns.report.formatting import format_share
from nowrongturns.report.path_figures import endpoints_figure, layers_figure
from nowrongturns.report.style import BASE_COLOR, run_palette

matplotlib.use("Agg")

# As the workflow passes it (RUNS_CONFIG): the runs' part of the config alone.
CONFIG = {
    key: value
    for key, value in validate_config(
        {
            "ablations": {"batch_size": [16], "seed": [1]},
            "runs": {"valley": {"task": "rosenbrock", "model": "point"}},
        },
        SCHEMA,
    ).items()
    if key in ("base", "ablations", "runs", "data")
}
RUNS = ["base", "batch_size=16", "seed=1", "valley"]
STEPS = [0, 1, 2, 5, 9]  # of 10


def geometry(
    run: str, gamma: float, update_offset: float = 0.0, other: float = float("nan")
) -> pd.DataFrame:
    """Every source at each checkpoint; sampled minibatches spread around `gamma`; the controls
    gamma_other `other` (NaN: no seed sibling) and gamma_origin a tenth of gamma."""
    rows = []
    for step in STEPS:
        row = {"run": run, "step": step, "progress": step / 10, "rsi": 0.1 + step, "eb": 1.0}
        for sample, spread in enumerate((-0.1, 0.0, 0.1)):
            rows.append(row | {"source": "sampled", "sample": sample, "gamma": gamma + spread})
        rows.append(row | {"source": "train_batch", "sample": 0, "gamma": gamma})
        rows.append(row | {"source": "update", "sample": 0, "gamma": gamma + update_offset})
        rows.append(row | {"source": "full_batch", "sample": 0, "gamma": 2 * gamma})
        rows.append(row | {"source": "random_labels", "sample": 0, "gamma": -gamma})
    table = pd.DataFrame(rows)
    table["z"] = 10 * table["gamma"]  # d = 100
    table["gamma_other"], table["gamma_origin"] = other, table["gamma"] / 10
    return table


TABLES = {run: geometry(run, gamma) for run, gamma in zip(RUNS, (0.3, 0.1, 0.5, -0.2))}


def legend_texts(fig) -> list[str]:
    return [text.get_text() for legend in fig.legends for text in legend.get_texts()]


def lines(ax) -> dict[str, matplotlib.lines.Line2D]:
    return {
        line.get_label(): line for line in ax.get_lines() if not line.get_label().startswith("_")
    }


def test_ablation_figure_draws_a_line_per_level_and_seeds_as_a_band():
    fig = ablation_figure(TABLES, CONFIG, "batch_size")
    base_level = "batch_size = 64 (base; mean of 2 seeds, 95 % band)"
    assert legend_texts(fig) == ["batch_size = 16", base_level]
    gamma_panel = fig.axes[2]
    drawn = lines(gamma_panel)
    # The base level is the mean of base (0.3) and seed=1 (0.5); its band spans the two.
    np.testing.assert_allclose(drawn[base_level].get_ydata(), 0.4)
    np.testing.assert_allclose(drawn["batch_size = 16"].get_ydata(), 0.1)
    # Its 95 % band: the two seeds resampled (0.3 or 0.5 or their mean), and each one's three
    # minibatches (its gamma -+ 0.1): wider than the seeds' own medians, within their spread.
    (band,) = gamma_panel.collections
    edges = band.get_paths()[0].vertices[:, 1]
    assert 0.2 - 1e-9 <= edges.min() <= 0.3 and 0.5 <= edges.max() <= 0.6 + 1e-9
    # Colours follow the run: base black, batch_size=16 as in every other figure.
    palette = run_palette(RUNS)
    assert matplotlib.colors.same_color(drawn[base_level].get_color(), BASE_COLOR)
    assert matplotlib.colors.same_color(
        drawn["batch_size = 16"].get_color(), palette["batch_size=16"]
    )


def test_the_seed_factor_draws_each_seed_alone():
    fig = ablation_figure(TABLES, CONFIG, "seed")
    assert legend_texts(fig) == ["seed = 0 (base)", "seed = 1"]
    assert not fig.axes[2].collections


def test_contrast_figure_sets_synthetic_tasks_apart_in_the_run_colours():
    fig = contrast_figure(TABLES, CONFIG)
    networks, synthetic = (lines(ax) for ax in fig.axes[:2])
    # Each run's sampled gammas are its gamma - 0.1, gamma and gamma + 0.1: batch_size=16's 0.0
    # is not above 0.
    assert sorted(networks) == [
        r"base ($\gamma > 0$: 100%)",
        r"batch_size=16 ($\gamma > 0$: 66.7%)",
        r"seed=1 ($\gamma > 0$: 100%)",
    ]
    # valley's sampled gammas are -0.3, -0.2 and -0.1: none above 0.
    (valley,) = synthetic.values()
    assert valley.get_label() == r"valley ($\gamma > 0$: 0%)"
    assert matplotlib.colors.same_color(valley.get_color(), run_palette(RUNS)["valley"])


@pytest.mark.parametrize("offset, drawn", [(1e-6, False), (0.2, True)])
def test_geometry_figure_draws_the_optimizer_step_where_it_differs(offset, drawn):
    fig = geometry_figure(geometry("momentum", 0.3, update_offset=offset), "momentum")
    texts = legend_texts(fig)
    assert ("optimizer step $d_t$" in texts) is drawn
    for baseline in ("full batch", "shuffled labels (a contrast)", "sampled minibatches"):
        assert any(text.startswith(baseline) for text in texts)


def test_geometry_figure_draws_no_contrast_where_the_labels_change_nothing():
    """A deterministic objective's shuffled-label rows are its train batch's: no contrast."""
    table = geometry("valley", -0.2)
    shuffled = table["source"] == "random_labels"
    table.loc[shuffled, "gamma"] = table.loc[table["source"] == "train_batch", "gamma"].to_numpy()
    label = "shuffled labels (a contrast)"
    assert label not in lines(geometry_figure(table, "valley").axes[2])
    assert label in lines(geometry_figure(geometry("base", 0.3), "base").axes[2])


@pytest.mark.parametrize("other, controls", [(float("nan"), 1), (0.05, 2)])
def test_geometry_figure_draws_the_controls_it_has_on_the_gamma_panel(other, controls):
    fig = geometry_figure(geometry("base", 0.3, other=other), "base")
    drawn = {label: line for label, line in lines(fig.axes[2]).items() if "control" in label}
    assert len(drawn) == controls and not any("control" in label for label in lines(fig.axes[0]))
    origin = drawn[r"control: $\cos(G, w)$"]
    assert list(origin.get_ydata()) == pytest.approx([0.03] * len(STEPS))  # the sampled median
    if controls == 2:
        (another,) = (line for label, line in drawn.items() if "another seed" in label)
        assert list(another.get_ydata()) == pytest.approx([0.05] * len(STEPS))


def test_geometry_figure_gives_z_on_the_right_of_gamma():
    fig = geometry_figure(geometry("base", 0.3), "base")
    (z_axis,) = fig.axes[2].child_axes
    assert z_axis.get_ylabel() == r"$z = \gamma\sqrt{d}$, $d$ = 100"
    assert fig.axes[1].get_yscale() == "log" and fig.axes[0].get_yscale() == "symlog"


def test_run_figures_are_written_in_the_format_asked(tmp_path):
    run_dir = tmp_path / "runs/base"
    run_dir.mkdir(parents=True)
    TABLES["base"].to_parquet(run_dir / "geometry.parquet")
    paths = draw_run_figures(run_dir, tmp_path / "figures", ["geometry"], fmt="svg")
    assert paths == [tmp_path / "figures/geometry.svg"]
    assert paths[0].read_text().startswith("<?xml")
    with pytest.raises(ValueError, match="known: geometry, schedule, bound, dense, closed_loop"):
        draw_run_figures(run_dir, tmp_path / "figures", ["gradient"])


@pytest.mark.parametrize(
    "share, printed",
    [(407 / 408, "99.8%"), (0.99996, "99.996%"), (1.0, "100%"), (0.0, "0%"), (2e-5, "0.002%")],
)
def test_a_share_prints_as_100_or_0_percent_only_when_it_is(share, printed):
    assert format_share(share) == printed


def test_the_bound_note_gives_the_share_of_directions_unrounded():
    bound = pd.DataFrame(
        {"progress": [0.0, 0.5, 1.0], "dist": [2.0, 1.0, 0.0], "dist_predicted": [2.0, 1.1, 0.1]}
    )
    guarantee = {"rate": None, "ignore_last": 0.05, "rsi_positive_fraction": 407 / 408}
    fig = bound_figure(bound, {"bound": guarantee}, "base")
    (note,) = fig.axes[0].texts
    assert "RSI > 0 on 99.8% of directions" in note.get_text()
    assert "RSI ≤ 0 somewhere" in note.get_text()


def test_layers_figure_draws_a_row_per_parameter_tensor():
    rows = [
        {"step": step, "progress": step / 10, "source": source, "sample": 0, "layer": layer}
        | {"gamma": gamma * (1 if source == "sampled" else -1)}
        for step in STEPS
        for source in ("sampled", "train_batch")
        for layer, gamma in (("0.weight", 0.2), ("0.bias", -0.1), ("3.weight", 0.05))
    ]
    fig = layers_figure(pd.DataFrame(rows), "base")
    ax = fig.axes[0]
    assert [label.get_text() for label in ax.get_yticklabels()] == [
        "0.weight",
        "0.bias",
        "3.weight",
    ]
    (mesh,) = ax.collections
    values = mesh.get_array().reshape(3, len(STEPS))
    np.testing.assert_allclose(values[:, 0], [0.2, -0.1, 0.05])  # the sampled rows alone


def test_endpoints_figure_puts_each_endpoint_on_its_own_progress():
    base = geometry("base", 0.3).assign(dot=1.0, grad_norm=1.0)
    cut = base[base["step"] < 5].assign(endpoint="progress=0.5", endpoint_step=5, dot=0.5)
    fig = endpoints_figure(cut, base, "base")
    eta = lines(fig.axes[1])
    assert sorted(eta) == ["progress=0.5, step 5", "w_T (w*), step 10"]
    np.testing.assert_allclose(eta["progress=0.5, step 5"].get_xdata(), [0, 0.2, 0.4])
    np.testing.assert_allclose(eta["progress=0.5, step 5"].get_ydata(), 0.5)
    np.testing.assert_allclose(eta["w_T (w*), step 10"].get_xdata(), [0, 0.1, 0.2, 0.5, 0.9])
