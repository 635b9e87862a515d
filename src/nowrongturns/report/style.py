"""What every figure shares: the style, a colour per run, the quantities' labels, the sources'
colours, and the three-panel layout of RSI, EB and gamma."""

from __future__ import annotations

import math

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

QUANTITIES = {
    "rsi": r"RSI $=\langle G, w-w^*\rangle / \|w-w^*\|^2$",
    "eb": r"EB $=\|G\| / \|w-w^*\|$",
    "gamma": r"$\gamma = \cos(G, w-w^*)$",
}


PROGRESS_LABEL = "training progress $t/T$"


SOURCE_STYLE = {
    "sampled": {"color": "C0", "label": "sampled minibatches: median, 10–90 %"},
    "train_batch": {"color": "C1", "label": "minibatch used by the optimizer"},
    "full_batch": {"color": "C2", "label": "full batch"},
    "random_labels": {"color": "0.5", "label": "shuffled labels (a contrast)"},
    "update": {"color": "C4", "label": "optimizer step $d_t$"},
    "fixed": {"color": "C3", "label": "fixed minibatches, one line each"},
}


# The controls of gamma (docs/quantities.md#the-controls), drawn on the gamma panel: the sampled
# median of each.
CONTROL_STYLE = {
    "gamma_other": {
        "color": "C5",
        "ls": "-.",
        "label": r"control: $\cos(G, w - w^{*\prime})$, another seed's $w^*$",
    },
    "gamma_origin": {"color": "C8", "ls": (0, (1, 1)), "label": r"control: $\cos(G, w)$"},
}


BASE_COLOR = "0.1"  # the base run, a level of every factor: the same black in every figure


def set_style() -> None:
    """The one style of every figure."""
    sns.set_theme(style="whitegrid", context="paper", font_scale=1.1)


def run_palette(run_names: list[str]) -> dict[str, tuple]:
    """A colour per run, fixed by the config's run order, so a run (a factor level) has the same
    colour in every figure: base black, the others the style's palette in turn."""
    others = [name for name in run_names if name != "base"]
    colours = sns.color_palette("deep", max(len(others), 1))
    return {"base": BASE_COLOR, **dict(zip(others, colours))}


def sampled_quantiles(table: pd.DataFrame, column: str) -> pd.DataFrame:
    """Per checkpoint (indexed by progress): the 10, 50 and 90 % quantiles of `column` over the
    sampled minibatches, columns 0.1, 0.5, 0.9."""
    sampled = table[table["source"] == "sampled"]
    return sampled.groupby("progress")[column].quantile([0.1, 0.5, 0.9]).unstack()


def three_panels(title: str) -> tuple[plt.Figure, dict[str, plt.Axes]]:
    """One panel per quantity, RSI, EB and gamma, against training progress."""
    set_style()
    fig, axes = plt.subplots(1, 3, figsize=(13, 4), layout="constrained")
    fig.suptitle(title)
    for ax, label in zip(axes, QUANTITIES.values()):
        ax.set_xlabel(PROGRESS_LABEL)
        ax.set_title(label)
    return fig, dict(zip(QUANTITIES, axes))


def scale_axes(panels: dict[str, plt.Axes], rsi_values: pd.Series) -> None:
    """EB spans decades: log. RSI spans decades too but a gradient may point away from w*: symlog,
    linear below the scale of its smaller values. gamma is a cosine: linear, with its zero."""
    panels["eb"].set_yscale("log")
    magnitudes = rsi_values.abs()
    magnitudes = magnitudes[np.isfinite(magnitudes) & (magnitudes > 0)]
    small = magnitudes.quantile(0.05) if len(magnitudes) else 1e-2
    panels["rsi"].set_yscale("symlog", linthresh=10 ** math.floor(math.log10(small)))
    panels["gamma"].axhline(0, color="k", lw=0.8)


def legend_below(fig: plt.Figure, ax: plt.Axes, ncols: int = 4) -> None:
    fig.legend(*ax.get_legend_handles_labels(), loc="outside lower center", ncols=ncols)
