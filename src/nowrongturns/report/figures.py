"""The figures stage: per run, the geometry along the path, the derived step size, the bound, in
dense mode the geometry of every training step, and for the base run the closed loop.

    nwt figures --run-dir results/runs/base --out-dir results/figures/base --format png \
        geometry schedule bound

A per-run figure is a function of some of the run's tables returning a matplotlib Figure, entered
in RUN_FIGURES (the analyses' in analysis_figures.py ANALYSIS_FIGURES) with the files of
runs/{run}/ it draws. To add one: the function, its line in RUN_FIGURES, its name and report
category in workflow/rules/common.smk (RUN_FIGURES) and its caption workflow/report/{name}.rst.
Figures that compare runs are in comparisons.py; all share the style and helpers of style.py.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from nowrongturns.files import written
from nowrongturns.report.formatting import format_share
from nowrongturns.report.path_figures import endpoints_figure, layers_figure
from nowrongturns.report.style import (
    CONTROL_STYLE,
    PROGRESS_LABEL,
    SOURCE_STYLE,
    legend_below,
    sampled_quantiles,
    scale_axes,
    set_style,
    three_panels,
)
from nowrongturns.tables import GEOMETRY_COLUMNS, TableError, read_json, read_parquet

# The step replayed from the stored state matches the train-batch gradient to float32 rounding.
FLOAT32_REPLAY = 1e-4


def geometry_figure(geometry: pd.DataFrame, run: str) -> plt.Figure:
    """RSI, EB and gamma against training progress: the sampled minibatches (median and 10-90 %
    band) and the baselines; z = gamma sqrt(d) on the right axis of the gamma panel."""
    fig, panels = three_panels(f"{run}: geometry of sampled gradients against $w^* = w_T$")
    sources = {source: rows for source, rows in geometry.groupby("source")}
    train_batch = sources.get("train_batch")
    # A deterministic objective has no labels to shuffle: its shuffled-label rows are its train
    # batch's, not a contrast.
    deterministic = train_batch is not None and "random_labels" in sources
    deterministic = (
        deterministic
        and len(sources["random_labels"]) == len(train_batch)
        and np.allclose(sources["random_labels"]["gamma"], train_batch["gamma"])
    )
    bands = {column: sampled_quantiles(geometry, column) for column in panels}
    for column, ax in panels.items():
        band = bands[column]
        style = SOURCE_STYLE["sampled"]
        ax.fill_between(band.index, band[0.1], band[0.9], color=style["color"], alpha=0.25, lw=0)
        ax.plot(band.index, band[0.5], color=style["color"], label=style["label"])
        if "full_batch" in sources:
            rows = sources["full_batch"]
            ax.plot(rows["progress"], rows[column], ls="--", **SOURCE_STYLE["full_batch"])
        # The same minibatch at every checkpoint: how one minibatch's geometry moves.
        fixed = sources.get("fixed", geometry.iloc[:0])
        for number, rows in fixed.groupby("sample"):
            style = SOURCE_STYLE["fixed"]
            ax.plot(
                rows["progress"],
                rows[column],
                lw=0.7,
                alpha=0.6,
                color=style["color"],
                label=style["label"] if number == 0 else None,
            )
        # Shuffled-label gradients point away from w* with a large RSI: on the RSI panel they would
        # take its scale; on EB and gamma they compare.
        if "random_labels" in sources and column != "rsi" and not deterministic:
            rows = sources["random_labels"]
            ax.plot(rows["progress"], rows[column], ls=":", **SOURCE_STYLE["random_labels"])
        if train_batch is not None:
            ax.scatter(
                train_batch["progress"], train_batch[column], s=6, **SOURCE_STYLE["train_batch"]
            )
        # With plain SGD the step is the train-batch gradient itself: drawn only where it differs.
        update = sources.get("update")
        if update is not None and (
            train_batch is None
            or not np.allclose(update["gamma"], train_batch["gamma"], atol=FLOAT32_REPLAY)
        ):
            ax.scatter(
                update["progress"], update[column], s=6, marker="x", **SOURCE_STYLE["update"]
            )
    for column, style in CONTROL_STYLE.items():
        if column in geometry and geometry[column].notna().any():
            median = sampled_quantiles(geometry, column)[0.5]
            panels["gamma"].plot(median.index, median, lw=1.2, **style)
    scale_axes(panels, bands["rsi"][0.5])
    sampled = geometry[(geometry["source"] == "sampled") & (geometry["gamma"] != 0)]
    if len(sampled):
        root_d = float((sampled["z"] / sampled["gamma"]).median())  # z = gamma sqrt(d), exactly
        z_axis = panels["gamma"].secondary_yaxis(
            "right", functions=(lambda g: g * root_d, lambda z: z / root_d)
        )
        z_axis.set_ylabel(rf"$z = \gamma\sqrt{{d}}$, $d$ = {round(root_d**2):,}")
    legend_below(fig, panels["gamma"], ncols=4)
    return fig


def dense_figure(dense: pd.DataFrame, geometry: pd.DataFrame, run: str) -> plt.Figure:
    """Dense mode: RSI, EB and gamma of the gradient of every training step, with their running
    median, beside the checkpoints' sampled median."""
    fig, panels = three_panels(f"{run}: geometry of every training step (dense mode)")
    steps = dense[dense["source"] == "train_batch"].sort_values("step")
    window = len(steps) // 50  # a running median only where there are many steps
    for column, ax in panels.items():
        faint = {"lw": 0.5, "alpha": 0.4} if window > 1 else {}
        ax.plot(steps["progress"], steps[column], color="C1", label="each step", **faint)
        if window > 1:
            running = steps[column].rolling(window, center=True, min_periods=1).median()
            label = f"running median over {window} steps"
            ax.plot(steps["progress"], running, color="C1", lw=2, label=label)
        median = sampled_quantiles(geometry, column)[0.5]
        ax.plot(median.index, median, "o", ms=3, color="C0", label="sampled minibatches: median")
    scale_axes(panels, steps["rsi"])
    legend_below(fig, panels["gamma"], ncols=3)
    return fig


def schedule_figure(schedule: pd.DataFrame, run: str) -> plt.Figure:
    """The locally optimal step eta* (raw, its band, smoothed, fitted) next to the lr used."""
    set_style()
    fig, ax = plt.subplots(figsize=(6.5, 4.8), layout="constrained")
    progress = schedule["progress"]
    if "eta_sampled_p10" in schedule and schedule["eta_raw"].equals(schedule["eta_sampled"]):
        band = schedule[["eta_sampled_p10", "eta_sampled_p90"]].where(lambda eta: eta > 0)
        ax.fill_between(
            progress,
            band.iloc[:, 0],
            band.iloc[:, 1],
            color="C0",
            alpha=0.2,
            lw=0,
            label="10–90 % over sampled minibatches",
        )
    positive = schedule[schedule["eta_raw"] > 0]
    ax.scatter(
        positive["progress"],
        positive["eta_raw"],
        s=8,
        color="C0",
        alpha=0.7,
        label=r"$\eta^*_t$ = RSI / EB$^2$ (SGD: median; else update)",
    )
    ax.plot(progress, schedule["eta_smooth"], color="C0", lw=2, label=r"$\eta^*_t$ smoothed")
    ax.plot(progress, schedule["eta_fit"], color="C3", lw=1.5, label=r"$\eta^*_t$ fitted")
    ax.plot(progress, schedule["lr_used"], color="k", ls="--", label=r"lr used $\eta_t$")
    ax.set_yscale("log")
    ax.set_xlabel(PROGRESS_LABEL)
    ax.set_ylabel("step size")
    fig.legend(
        *ax.get_legend_handles_labels(), loc="outside lower center", ncols=2, fontsize="small"
    )
    ax.set_title(f"{run}: locally optimal step size along the path")
    return fig


def bound_figure(bound: pd.DataFrame, schedule: dict, run: str) -> plt.Figure:
    """||w_t - w*||: stored, predicted from the measured per-step factors, and guaranteed (the
    `bound` entry of schedule.json)."""
    guarantee = schedule["bound"]
    set_style()
    fig, ax = plt.subplots(figsize=(6.5, 4.8), layout="constrained")
    stored = bound[bound["dist"] > 0]
    ax.plot(
        bound["progress"],
        bound["dist_predicted"],
        color="C0",
        lw=2,
        label=r"predicted: $\|w_0-w^*\| \prod_s (1 - 2\eta_s \mathrm{RSI}_s"
        r" + \eta_s^2 \mathrm{EB}_s^2)^{1/2}$",
    )
    ax.scatter(
        stored["progress"],
        stored["dist"],
        s=10,
        color="k",
        zorder=3,
        label=r"actual $\|w_t - w^*\|$ (checkpoints)",
    )
    if guarantee["rate"] is not None:
        promise = (
            rf"guaranteed at constant step $\mu/L^2$ = {guarantee['step']:.2g}: "
            rf"$(1-\mu^2/L^2)^{{t/2}}$, $\mu$ = {guarantee['mu']:.2g}, "
            rf"$L$ = {guarantee['L']:.2g}"
        )
        ax.plot(bound["progress"], bound["dist_guaranteed"], color="C3", ls="--", label=promise)
    share = guarantee["rsi_positive_fraction"]
    note = (
        f"path but its last {guarantee['ignore_last']:.0%}: "
        f"RSI > 0 on {format_share(share)} of directions"
    )
    if guarantee["rate"] is None:
        note += "\nRSI ≤ 0 somewhere: no linear-rate guarantee"
    ax.text(0.02, 0.03, note, transform=ax.transAxes, va="bottom", fontsize="small")
    ax.set_yscale("log")
    ax.set_xlabel(PROGRESS_LABEL)
    ax.set_ylabel(r"distance to $w^* = w_T$")
    fig.legend(*ax.get_legend_handles_labels(), loc="outside lower center", fontsize="small")
    ax.set_title(f"{run}: distance to the final point")
    return fig


def closed_loop_figure(curves: pd.DataFrame, run: str) -> plt.Figure:
    """The run and its retrainings: lr, training loss and distance to each one's final point."""
    set_style()
    panels = {
        "lr": "learning rate",
        "train_loss": "training loss",
        "dist_to_final": r"$\|w_t - w_T\|$",
    }
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8), layout="constrained")
    for ax, (column, label) in zip(axes, panels.items()):
        positive = curves[curves[column] > 0]  # each run's last point is 0 from its w_T
        sns.lineplot(positive, x="progress", y=column, hue="run", ax=ax, legend=ax is axes[0])
        ax.set_yscale("log")
        ax.set_xlabel(PROGRESS_LABEL)
        ax.set_ylabel(label)
    fig.suptitle(f"{run}: trained on its derived schedule and on warm-up + cosine")
    return fig


# name -> (function, the files of runs/{run}/ it draws, passed in this order, then the run name).
RUN_FIGURES = {
    "geometry": (geometry_figure, ["geometry.parquet"]),
    "schedule": (schedule_figure, ["schedule.csv"]),
    "bound": (bound_figure, ["bound.csv", "schedule.json"]),
    "dense": (dense_figure, ["dense.parquet", "geometry.parquet"]),
    "closed_loop": (closed_loop_figure, ["closed_loop_curves.csv"]),
    "layers": (layers_figure, ["layers.parquet"]),
    "endpoints": (endpoints_figure, ["endpoints.parquet", "geometry.parquet"]),
}


# The geometry table's columns the figures draw from.
FIGURE_COLUMNS = {
    name: GEOMETRY_COLUMNS[name]
    for name in ("run", "step", "progress", "source", "sample", "rsi", "eb", "gamma", "z")
}


def read_table(path: str | Path) -> pd.DataFrame | dict:
    """A Parquet or CSV table, or a JSON document (schedule.json) as a dict."""
    path = Path(path)
    if path.suffix == ".json":
        return read_json(path, "document")
    if path.suffix == ".parquet":
        columns = FIGURE_COLUMNS if path.name == "geometry.parquet" else {}
        return read_parquet(path, path.stem, columns)
    return pd.read_csv(path)


def save_figure(fig: plt.Figure, path: str | Path, fmt: str) -> Path:
    """Write the figure atomically in `fmt` (png, pdf, svg) and close it."""
    with written(path) as tmp:
        fig.savefig(tmp, dpi=150, format=fmt)
    plt.close(fig)
    return Path(path)


def draw_run_figures(run_dir: str, out_dir: str, names: list[str], fmt: str = "png") -> list[Path]:
    """Draw the named figures of the run in `run_dir` to `out_dir`/{name}.{fmt}."""
    from nowrongturns.report.analysis_figures import (
        ANALYSIS_FIGURES,  # they draw in the style defined here
    )

    known = {**RUN_FIGURES, **ANALYSIS_FIGURES}
    unknown = sorted(set(names) - set(known))
    if unknown:
        raise ValueError(f"unknown figure {unknown}; known: {', '.join(known)}")
    run = Path(run_dir).name
    tables = {}
    paths = []
    for name in names:
        function, files = known[name]
        for file in files:
            if file not in tables:
                tables[file] = read_table(Path(run_dir) / file)
        try:
            figure = function(*(tables[file] for file in files), run)
        except (KeyError, IndexError, TypeError, ValueError) as error:
            # Tables that read, but whose values no figure can be drawn from (no row of a
            # known source, text where numbers were): named, as any other bad input.
            where = ", ".join(str(Path(run_dir) / file) for file in files)
            raise TableError(f"{where}: no {name} figure can be drawn ({error!r})") from None
        paths.append(save_figure(figure, Path(out_dir) / f"{name}.{fmt}", fmt))
    return paths
