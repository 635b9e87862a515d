"""The figures of the analyses along the path, one per analysis, entered in ANALYSIS_FIGURES as
figures.py enters its own in RUN_FIGURES (name -> function, the files of runs/{run}/ it draws),
drawn by the same `nwt figures`, in the same style; their captions are workflow/report/{name}.rst.
Colours along the path are training progress t/T, in one colour map for every figure.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from nowrongturns.report.formatting import format_share
from nowrongturns.report.style import PROGRESS_LABEL, set_style

PATH_COLOURS = "viridis"  # progress t/T: dark at the start, yellow at the end


def progress_colours(fig: plt.Figure, ax: plt.Axes):
    """The colour of each progress in [0, 1], with its colour bar beside `ax`."""
    norm = plt.Normalize(0.0, 1.0)
    mapping = plt.cm.ScalarMappable(norm=norm, cmap=PATH_COLOURS)
    fig.colorbar(mapping, ax=ax, label=PROGRESS_LABEL)
    return lambda progress: mapping.to_rgba(progress)


def single_panel(title: str, size=(6.5, 4.8)) -> tuple[plt.Figure, plt.Axes]:
    set_style()
    fig, ax = plt.subplots(figsize=size, layout="constrained")
    ax.set_title(title)
    return fig, ax


def interpolation_figure(table: pd.DataFrame, run: str) -> plt.Figure:
    """The loss along alpha from each checkpoint to w*, one line per checkpoint by progress."""
    from nowrongturns.analyses.interpolation import monotone_summary

    fig, ax = single_panel(f"{run}: loss on the straight path from $w_t$ to $w^*$")
    colour = progress_colours(fig, ax)
    for _, rows in table.groupby("step"):
        rows = rows.sort_values("alpha")
        ax.plot(rows["alpha"], rows["loss"], color=colour(rows["progress"].iloc[0]), lw=0.9)
    summary = monotone_summary(table)
    share = format_share(summary["monotone"])
    note = (
        f"monotone on {share} of {summary['checkpoints']} segments\n"
        f"largest rise {summary['largest_bump']:.3g} "
        f"(step {summary['largest_bump_step']})"
    )
    ax.text(
        0.98,
        0.97,
        note,
        transform=ax.transAxes,
        ha="right",
        va="top",
        fontsize="small",
        bbox={"facecolor": "white", "alpha": 0.8, "lw": 0},
    )
    ax.set_yscale("log" if (table["loss"] > 0).all() else "linear")
    ax.set_xlabel(r"$\alpha$: $w_t + \alpha\,(w^* - w_t)$")
    ax.set_ylabel("loss on the evaluation set (train mode)")
    return fig


def sharpness_figure(table: pd.DataFrame, run: str) -> plt.Figure:
    """The curvature that meets the optimizer's stability threshold, against progress: lambda_max
    and the batch sharpness beside 2/lr or 2(1 + beta)/lr; for Adam, the preconditioned
    lambda_max beside its threshold. A Lanczos run that did not converge is an open marker."""
    fig, ax = single_panel(f"{run}: sharpness along the path")
    adaptive = table["lambda_max_preconditioned"].notna().any()
    curves = [
        ("lambda_max", r"$\lambda_{\max}(H)$ (Lanczos)", "C0"),
        ("batch_sharpness", r"batch sharpness $g^\top H_B g / \|g\|^2$", "C1"),
    ]
    if adaptive:
        curves.append(
            (
                "lambda_max_preconditioned",
                r"$\lambda_{\max}(P^{-1}H)$ (Adam's preconditioner)",
                "C2",
            )
        )
    shown = []
    for column, label, color in curves:
        if table[column].isna().all():
            continue
        ax.plot(table["progress"], table[column], "-", lw=1, color=color, label=label)
        for converged, fill in ((True, color), (False, "none")):
            rows = table[table["converged"] == converged]
            ax.plot(rows["progress"], rows[column], "o", ms=3, color=color, mfc=fill)
        shown.append(table[column])
    if not table["converged"].all():
        ax.plot([], [], "o", ms=3, color="k", mfc="none", label="Lanczos not converged")
    threshold_label = (
        r"$2(1+\beta_1)/((1-\beta_1)\eta_t)$ (Adam, of $P^{-1}H$)"
        if adaptive
        else "the optimizer's stability threshold (2/η, 2(1+β)/η)"
    )
    ax.plot(table["progress"], table["threshold"], ls="--", color="k", label=threshold_label)
    values = pd.concat(shown) if shown else table["lambda_max"]
    if (values.dropna() > 0).all():
        ax.set_yscale("log")
    else:
        ax.set_yscale("symlog", linthresh=float(values.abs().min() or 1e-3))
    ax.set_xlabel(PROGRESS_LABEL)
    ax.set_ylabel("curvature")
    fig.legend(*ax.get_legend_handles_labels(), loc="outside lower center", fontsize="small")
    return fig


def plane_figure(table: pd.DataFrame, run: str) -> plt.Figure:
    """The loss on the plane of the top two principal directions, the checkpoints over it."""
    explained = table.attrs.get("explained_variance", [np.nan, np.nan])
    fig, ax = single_panel(
        f"{run}: loss on the trajectory plane\n(directions hold {explained[0]:.1%} and "
        f"{explained[1]:.1%} of $\\Sigma\\,\\|w_t - w^*\\|^2$)",
        size=(6.5, 5.4),
    )
    grid = table[table["kind"] == "grid"].pivot(index="y", columns="x", values="loss")
    positive = (grid.to_numpy() > 0).all()
    levels = np.geomspace(grid.min().min(), grid.max().max(), 25) if positive else 25
    norm = plt.matplotlib.colors.LogNorm() if positive else None
    contour = ax.contourf(
        grid.columns, grid.index, grid.to_numpy(), levels=levels, norm=norm, cmap="Greys"
    )
    fig.colorbar(contour, ax=ax, label="loss on the evaluation set", format="%.3g")
    checkpoints = table[table["kind"] == "checkpoint"].sort_values("step")
    ax.plot(checkpoints["x"], checkpoints["y"], color="C3", lw=1, zorder=2)
    ax.scatter(
        checkpoints["x"],
        checkpoints["y"],
        c=checkpoints["progress"],
        cmap=PATH_COLOURS,
        vmin=0,
        vmax=1,
        s=14,
        zorder=3,
        label=r"checkpoints $w_t$ (by $t/T$)",
    )
    ax.scatter([0], [0], marker="*", s=120, color="C1", zorder=4, label=r"$w^* = w_T$")
    ax.set_xlabel("first principal direction (distance in weight space)")
    ax.set_ylabel("second principal direction")
    ax.legend(loc="best", fontsize="small")
    return fig


def orthogonal_figure(table: pd.DataFrame, run: str) -> plt.Figure:
    """The cosine of the gradients' parts orthogonal to w - w*, k steps apart, against k: one
    line per step t (a sample of them where there are many), coloured by progress."""
    title = rf"{run}: gradients' parts orthogonal to $w - w^*$, $k$ steps apart"
    fig, ax = single_panel(title)
    colour = progress_colours(fig, ax)
    steps = np.unique(table["step"])
    shown = steps[np.linspace(0, len(steps) - 1, min(len(steps), 60)).round().astype(int)]
    for step in shown:
        rows = table[table["step"] == step]
        ax.plot(
            rows["k"], rows["cosine"], color=colour(rows["progress"].iloc[0]), lw=0.7, alpha=0.5
        )
    median = table.groupby("k")["cosine"].median()
    ax.plot(median.index, median, "o-", color="C3", lw=2, label="median over all steps $t$")
    ax.axhline(0, color="k", lw=0.8)
    ax.set_xscale("log")
    ax.set_xticks(median.index, [str(k) for k in median.index])
    ax.set_xlabel("lag $k$ (steps)")
    ax.set_ylabel(r"$\cos(g_t^\perp, g_{t+k}^\perp)$")
    ax.legend(loc="upper right", fontsize="small")
    return fig


ANALYSIS_FIGURES = {
    "interpolation": (interpolation_figure, ["interpolation.parquet"]),
    "sharpness": (sharpness_figure, ["sharpness.parquet"]),
    "plane": (plane_figure, ["plane.parquet"]),
    "orthogonal": (orthogonal_figure, ["orthogonal.parquet"]),
}
