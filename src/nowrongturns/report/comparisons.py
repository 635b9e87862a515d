"""Figures that compare runs: one per ablation factor, and the contrasting examples.

    nwt ablation-figure batch_size --config config.json \
        --out results/figures/ablations/batch_size.png results/runs/*/geometry.parquet
    nwt contrast-figure --config config.json --out results/figures/contrasting.png \
        results/runs/*/geometry.parquet

`--config` is the workflow config with its defaults filled (inline JSON, or a YAML/JSON file):
its `base`, `ablations` and `runs` say which runs there are and what each level of a factor is
(config.ablation_levels). Each geometry table names its run in its `run` column.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from nowrongturns.config import SYNTHETIC_TASKS, ablation_levels, expand_runs, format_value
from nowrongturns.report.claims import FIRST, check_tables
from nowrongturns.report.formatting import format_share
from nowrongturns.report.run_statistics import (
    IGNORE_LAST,
    checkpoint_median_draws,
    run_statistics,
)
from nowrongturns.report.style import (
    PROGRESS_LABEL,
    QUANTITIES,
    legend_below,
    run_palette,
    sampled_quantiles,
    scale_axes,
    set_style,
    three_panels,
)
from nowrongturns.report.uncertainty import DRAWS, SEED, interval, seed_draws


def sampled_medians(geometry: pd.DataFrame) -> pd.DataFrame:
    """Per checkpoint (indexed by progress): median RSI, EB and gamma over sampled minibatches."""
    return pd.DataFrame({column: sampled_quantiles(geometry, column)[0.5] for column in QUANTITIES})


def level_band(tables: dict[str, pd.DataFrame], runs: list[str], column: str) -> pd.DataFrame:
    """A level's curve: per checkpoint (indexed by progress), the mean over its seeds of the
    median over sampled minibatches of `column`, and its 95 % bootstrap interval (seeds and
    minibatches resampled), columns "mean", "low", "high". Seeds share their checkpoints (they
    differ in the seed alone): aligned on progress."""
    per_run = [checkpoint_median_draws(tables[run], column) for run in runs]
    progress = per_run[0].index
    for run, medians in zip(runs, per_run):
        if not medians.index.equals(progress):
            raise ValueError(f"run {run!r}: its checkpoints are not those of {runs[0]!r}")
    drawn = np.stack([medians[list(range(DRAWS))].to_numpy().T for medians in per_run])
    level = seed_draws(drawn, np.random.default_rng(SEED))
    bounds = np.array([interval(level[:, k]) for k in range(len(progress))])
    mean = np.mean([medians["median"] for medians in per_run], axis=0)
    return pd.DataFrame({"mean": mean, "low": bounds[:, 0], "high": bounds[:, 1]}, index=progress)


def ablation_figure(tables: dict[str, pd.DataFrame], config: dict, factor: str) -> plt.Figure:
    """One line per level of `factor`: the median over sampled minibatches of RSI, EB and gamma;
    a level with seed replicates is drawn as their mean, in its 95 % bootstrap band (seeds and
    minibatches resampled)."""
    levels = ablation_levels(config)[factor]
    palette = run_palette(list(expand_runs(config)))
    fig, panels = three_panels(f"ablation of {factor}: median over sampled minibatches")
    every_rsi = []
    for value, runs in levels:
        check_tables(tables, runs)
        notes = ["base"] if "base" in runs else []
        if len(runs) > 1:
            notes.append(f"mean of {len(runs)} seeds, 95 % band")
        label = f"{factor} = {format_value(value)}" + (f" ({'; '.join(notes)})" if notes else "")
        for column, ax in panels.items():
            if len(runs) == 1:
                curve = sampled_medians(tables[runs[0]])[column]
                ax.plot(curve.index, curve, color=palette[runs[0]], label=label)
            else:
                band = level_band(tables, runs, column)
                curve = band["mean"]
                ax.plot(band.index, curve, color=palette[runs[0]], label=label)
                ax.fill_between(
                    band.index, band["low"], band["high"], color=palette[runs[0]], alpha=0.2, lw=0
                )
            if column == "rsi":
                every_rsi.append(curve)
    scale_axes(panels, pd.concat(every_rsi))
    legend_below(fig, panels["gamma"], ncols=min(len(levels), 4))
    return fig


def contrast_figure(tables: dict[str, pd.DataFrame], config: dict) -> plt.Figure:
    """gamma of the real networks' paths beside the synthetic objectives' (median over sampled
    minibatches), each run labelled with its share of sampled gamma > 0 (as in the claims)."""
    runs = expand_runs(config)
    check_tables(tables, runs)
    palette = run_palette(list(runs))
    set_style()
    fig, axes = plt.subplots(1, 2, figsize=(12, 5), sharey=True, layout="constrained")
    groups = {
        "networks on data": [r for r in runs if runs[r]["task"] not in SYNTHETIC_TASKS],
        "synthetic objectives, answer known": [
            r for r in runs if runs[r]["task"] in SYNTHETIC_TASKS
        ],
    }
    for ax, (title, names) in zip(axes, groups.items()):
        for run in names:
            median = sampled_quantiles(tables[run], "gamma")[0.5]
            values, _ = run_statistics(tables[run], runs[run], IGNORE_LAST, draws=1)
            share = values["gamma_positive_share"]  # the same whatever ignore_last
            ax.plot(
                median.index,
                median,
                marker=".",
                ms=4,
                color=palette[run],
                label=rf"{run} ($\gamma > 0$: {format_share(share)})",
            )
        ax.axhline(0, color="k", lw=0.8)
        # Wrong turns come early (the first steps bounce): the first 1 % of training is stretched.
        ax.set_xscale("symlog", linthresh=0.01)
        ax.set_xlim(0, 1)
        ax.set_xlabel(PROGRESS_LABEL + " (linear to 0.01, then log)")
        ax.set_title(title)
        if names:
            ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.16), ncols=3, fontsize="small")
    axes[0].set_ylabel(r"$\gamma$, median over sampled minibatches")
    fig.supxlabel(
        rf"in the legend: the share of sampled $\gamma > 0$ over the first {FIRST:.0%} of training",
        fontsize="small",
    )
    fig.suptitle(
        r"contrasting examples: $\gamma$ along the paths of networks and of synthetic objectives"
    )
    return fig
