"""The figures stage: per run, the geometry along the path and the derived step size.

    nwt figures --geometry results/runs/base/geometry.parquet \
        --schedule results/runs/base/schedule.csv --out-dir results/figures/base --format png

Each figure is one function taking tables and returning a matplotlib Figure.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns

from .files import written

QUANTITIES = {
    "rsi": r"RSI $=\langle G, w-w^*\rangle / \|w-w^*\|^2$",
    "eb": r"EB $=\|G\| / \|w-w^*\|$",
    "gamma": r"$\gamma = \cos(G, w-w^*)$",
}
SOURCE_STYLE = {
    "sampled": {"color": "C0", "label": "sampled minibatches: median, 10–90 %"},
    "train_batch": {"color": "C1", "label": "minibatch used by the optimizer"},
    "full_batch": {"color": "C2", "label": "full batch"},
    "random_labels": {"color": "0.5", "label": "shuffled labels (noise baseline)"},
}


def _style() -> None:
    sns.set_theme(style="whitegrid", context="paper", font_scale=1.1)


def geometry_figure(table: pd.DataFrame, run: str) -> plt.Figure:
    """RSI, EB and gamma against training progress, one panel each."""
    _style()
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8), layout="constrained")
    sampled = table[table["source"] == "sampled"].groupby("progress")
    for ax, (column, label) in zip(axes, QUANTITIES.items()):
        band = sampled[column].quantile([0.1, 0.5, 0.9]).unstack()
        style = SOURCE_STYLE["sampled"]
        ax.fill_between(band.index, band[0.1], band[0.9], color=style["color"], alpha=0.25, lw=0)
        ax.plot(band.index, band[0.5], color=style["color"], label=style["label"])
        # Shuffled-label gradients are large: shown only as a cosine, where they are comparable.
        for source in ("full_batch", "random_labels") if column == "gamma" else ("full_batch",):
            rows = table[table["source"] == source]
            style = SOURCE_STYLE[source]
            ax.plot(
                rows["progress"],
                rows[column],
                color=style["color"],
                label=style["label"],
                ls="--" if source == "full_batch" else ":",
            )
        rows = table[table["source"] == "train_batch"]
        style = SOURCE_STYLE["train_batch"]
        ax.scatter(rows["progress"], rows[column], s=6, color=style["color"], label=style["label"])
        ax.set_xlabel("training progress $t/T$")
        ax.set_title(label)
        if column == "eb":
            ax.set_yscale("log")  # EB grows by decades as w approaches w*
        if column == "rsi":
            ax.set_yscale("symlog", linthresh=1e-2)
        if column == "gamma":
            ax.axhline(0, color="k", lw=0.8)
    fig.legend(*axes[-1].get_legend_handles_labels(), loc="outside lower center", ncols=4)
    fig.suptitle(f"{run}: geometry of sampled gradients against $w^* = w_T$")
    return fig


def schedule_figure(schedule: pd.DataFrame, run: str) -> plt.Figure:
    """The locally optimal step eta* (raw and smoothed) next to the learning rate used."""
    _style()
    fig, ax = plt.subplots(figsize=(6.5, 4.8), layout="constrained")
    positive = schedule[schedule["eta_star"] > 0]
    ax.scatter(
        positive["progress"],
        positive["eta_star"],
        s=8,
        color="C0",
        alpha=0.6,
        label=r"$\eta^*_t$ = RSI / EB$^2$ (median over sampled minibatches)",
    )
    ax.plot(
        schedule["progress"],
        schedule["eta_star_smooth"],
        color="C0",
        lw=2,
        label=r"$\eta^*_t$ smoothed",
    )
    ax.plot(
        schedule["progress"],
        schedule["lr_used"],
        color="k",
        ls="--",
        label=r"learning rate used $\eta_t$",
    )
    ax.set_yscale("log")
    ax.set_xlabel("training progress $t/T$")
    ax.set_ylabel("step size")
    fig.legend(*ax.get_legend_handles_labels(), loc="outside lower center", fontsize="small")
    ax.set_title(f"{run}: locally optimal step size along the path")
    return fig


def draw_run_figures(geometry: str, schedule: str, out_dir: str, fmt: str = "png") -> list[Path]:
    table = pd.read_parquet(geometry)
    run = str(table["run"].iloc[0]) if len(table) else Path(out_dir).name
    figures = {
        "geometry": geometry_figure(table, run),
        "schedule": schedule_figure(pd.read_csv(schedule), run),
    }
    paths = []
    for name, fig in figures.items():
        path = Path(out_dir) / f"{name}.{fmt}"
        with written(path) as tmp:
            fig.savefig(tmp, dpi=150, format=fmt)
        plt.close(fig)
        paths.append(path)
    return paths
