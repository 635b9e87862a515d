"""The figures stage: per run, the geometry along the path and the derived step size.

    nwt figures --geometry results/runs/base/geometry.parquet \
        --schedule results/runs/base/schedule.csv --out-dir results/figures/base --format png

Each figure is one function taking tables and returning a matplotlib Figure.
"""

from __future__ import annotations

import json
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
    """The locally optimal step eta* (raw, its band, smoothed, fitted) next to the lr used."""
    _style()
    fig, ax = plt.subplots(figsize=(6.5, 4.8), layout="constrained")
    progress = schedule["progress"]
    if "eta_sampled_p10" in schedule and schedule["eta_raw"].equals(schedule["eta_sampled"]):
        band = schedule[["eta_sampled_p10", "eta_sampled_p90"]].where(lambda eta: eta > 0)
        ax.fill_between(progress, band.iloc[:, 0], band.iloc[:, 1], color="C0", alpha=0.2, lw=0,
                        label="10–90 % over sampled minibatches")  # fmt: skip
    positive = schedule[schedule["eta_raw"] > 0]
    ax.scatter(positive["progress"], positive["eta_raw"], s=8, color="C0", alpha=0.7,
               label=r"$\eta^*_t$ = RSI / EB$^2$ (SGD: median; else update)")  # fmt: skip
    ax.plot(progress, schedule["eta_smooth"], color="C0", lw=2, label=r"$\eta^*_t$ smoothed")
    ax.plot(progress, schedule["eta_fit"], color="C3", lw=1.5, label=r"$\eta^*_t$ fitted")
    ax.plot(progress, schedule["lr_used"], color="k", ls="--", label=r"lr used $\eta_t$")
    ax.set_yscale("log")
    ax.set_xlabel("training progress $t/T$")
    ax.set_ylabel("step size")
    fig.legend(*ax.get_legend_handles_labels(), loc="outside lower center", ncols=2,
               fontsize="small")  # fmt: skip
    ax.set_title(f"{run}: locally optimal step size along the path")
    return fig


def bound_figure(bound: pd.DataFrame, guarantee: dict, run: str) -> plt.Figure:
    """||w_t - w*||: stored, predicted from the measured per-step factors, and guaranteed."""
    _style()
    fig, ax = plt.subplots(figsize=(6.5, 4.8), layout="constrained")
    stored = bound[bound["dist"] > 0]
    ax.plot(bound["progress"], bound["dist_predicted"], color="C0", lw=2,
            label=r"predicted: $\|w_0-w^*\| \prod_s (1 - 2\eta_s \mathrm{RSI}_s"
                  r" + \eta_s^2 \mathrm{EB}_s^2)^{1/2}$")  # fmt: skip
    ax.scatter(stored["progress"], stored["dist"], s=10, color="k", zorder=3,
               label=r"actual $\|w_t - w^*\|$ (checkpoints)")  # fmt: skip
    if guarantee["rate"] is not None:
        promise = (rf"guaranteed at constant step $\mu/L^2$ = {guarantee['step']:.2g}: "
                   rf"$(1-\mu^2/L^2)^{{t/2}}$, $\mu$ = {guarantee['mu']:.2g}, "
                   rf"$L$ = {guarantee['L']:.2g}")  # fmt: skip
        ax.plot(bound["progress"], bound["dist_guaranteed"], color="C3", ls="--", label=promise)
    share = guarantee["rsi_positive_fraction"]
    note = f"path but its last {guarantee['ignore_last']:.0%}: RSI > 0 on {share:.0%} of directions"
    if guarantee["rate"] is None:
        note += "\nRSI ≤ 0 somewhere: no linear-rate guarantee"
    ax.text(0.02, 0.03, note, transform=ax.transAxes, va="bottom", fontsize="small")
    ax.set_yscale("log")
    ax.set_xlabel("training progress $t/T$")
    ax.set_ylabel(r"distance to $w^* = w_T$")
    fig.legend(*ax.get_legend_handles_labels(), loc="outside lower center", fontsize="small")
    ax.set_title(f"{run}: distance to the final point")
    return fig


def closed_loop_figure(curves: pd.DataFrame, run: str) -> plt.Figure:
    """The run and its retrainings: lr, training loss and distance to each one's final point."""
    _style()
    panels = {"lr": "learning rate", "train_loss": "training loss",
              "dist_to_final": r"$\|w_t - w_T\|$"}  # fmt: skip
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8), layout="constrained")
    for ax, (column, label) in zip(axes, panels.items()):
        positive = curves[curves[column] > 0]  # each run's last point is 0 from its w_T
        sns.lineplot(positive, x="progress", y=column, hue="run", ax=ax, legend=ax is axes[0])
        ax.set_yscale("log")
        ax.set_xlabel("training progress $t/T$")
        ax.set_ylabel(label)
    fig.suptitle(f"{run}: trained on its derived schedule and on warm-up + cosine")
    return fig


def save(figures: dict[str, plt.Figure], out_dir: str, fmt: str) -> list[Path]:
    paths = []
    for name, fig in figures.items():
        path = Path(out_dir) / f"{name}.{fmt}"
        with written(path) as tmp:
            fig.savefig(tmp, dpi=150, format=fmt)
        plt.close(fig)
        paths.append(path)
    return paths


def draw_run_figures(
    geometry: str, schedule: str, schedule_json: str, bound: str, out_dir: str, fmt: str = "png"
) -> list[Path]:
    table = pd.read_parquet(geometry)
    run = str(table["run"].iloc[0]) if len(table) else Path(out_dir).name
    figures = {
        "geometry": geometry_figure(table, run),
        "schedule": schedule_figure(pd.read_csv(schedule), run),
        "bound": bound_figure(
            pd.read_csv(bound), json.loads(Path(schedule_json).read_text())["bound"], run
        ),
    }
    return save(figures, out_dir, fmt)


def draw_closed_loop_figure(curves: str, out: str) -> Path:
    path = Path(out)
    run = path.parent.name
    return save({path.stem: closed_loop_figure(pd.read_csv(curves), run)}, path.parent,
                path.suffix[1:])[0]  # fmt: skip
