"""Figures of the measure stage's optional tables: gamma per layer (measure.layers) and eta* against
other endpoints (measure.endpoints).

    fig = layers_figure(pd.read_parquet("results/runs/base/layers.parquet"), "base")
    fig = endpoints_figure(endpoints_table, geometry_table, "base")
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from nowrongturns.report.style import set_style


def layers_figure(layers: pd.DataFrame, run: str) -> plt.Figure:
    """gamma of each parameter tensor along training: the median over sampled minibatches, one
    row per tensor (in parameter order), one column per checkpoint, on a scale centred on 0."""
    set_style()
    sampled = layers[layers["source"] == "sampled"]
    order = list(dict.fromkeys(sampled["layer"]))
    grid = sampled.groupby(["layer", "progress"])["gamma"].median().unstack().loc[order]
    progress = grid.columns.to_numpy()
    # Each checkpoint's cell spans to the midpoints with its neighbours.
    middles = (progress[1:] + progress[:-1]) / 2
    edges = np.r_[progress[0], middles, progress[-1]] if len(progress) > 1 else np.r_[0.0, 1.0]
    fig, ax = plt.subplots(figsize=(9, 1.5 + 0.28 * len(order)), layout="constrained")
    finite = np.abs(grid.to_numpy()[np.isfinite(grid.to_numpy())])
    scale = float(finite.max()) if len(finite) else 1.0
    mesh = ax.pcolormesh(
        edges, np.arange(len(order) + 1), grid.to_numpy(), cmap="RdBu", vmin=-scale, vmax=scale
    )
    ax.set_yticks(np.arange(len(order)) + 0.5, order, fontsize="small")
    ax.invert_yaxis()
    ax.set_xlabel("training progress t/T")
    fig.colorbar(mesh, ax=ax, label=r"$\gamma_l$ = cos($G_l$, $w_l - w^*_l$), median")
    ax.set_title(f"{run}: γ per parameter tensor against $w^* = w_T$ (sampled minibatches)")
    return fig


def _eta_star(rows: pd.DataFrame) -> pd.Series:
    """Per checkpoint (indexed by progress towards the endpoint): the median over the sampled
    minibatches of eta* = <G, w - e> / ||G||^2."""
    sampled = rows[rows["source"] == "sampled"]
    eta = sampled["dot"] / sampled["grad_norm"] ** 2
    towards = sampled["step"] / sampled["endpoint_step"]
    return eta.groupby(towards).median()


def _gamma(rows: pd.DataFrame) -> pd.Series:
    sampled = rows[rows["source"] == "sampled"]
    return sampled["gamma"].groupby(sampled["step"] / sampled["endpoint_step"]).median()


def endpoints_figure(endpoints: pd.DataFrame, geometry: pd.DataFrame, run: str) -> plt.Figure:
    """gamma and eta* (median over sampled minibatches) against each endpoint, w_T among them,
    on a common axis: progress towards that endpoint, step / the endpoint's step."""
    set_style()
    total = geometry["step"].max() / geometry["progress"].max()
    own = geometry.assign(endpoint="w_T (w*)", endpoint_step=round(total))
    tables = pd.concat([own, endpoints], ignore_index=True)
    fig, (gamma_ax, eta_ax) = plt.subplots(1, 2, figsize=(12, 4.4), layout="constrained")
    for number, (name, rows) in enumerate(tables.groupby("endpoint", sort=False)):
        label = f"{name}, step {int(rows['endpoint_step'].iloc[0])}"
        style = {"color": "k" if number == 0 else f"C{number}", "label": label}
        gamma = _gamma(rows)
        gamma_ax.plot(gamma.index, gamma, **style)
        eta = _eta_star(rows)
        eta = eta[eta > 0]
        eta_ax.plot(eta.index, eta, marker=".", ms=3, **style)
    gamma_ax.axhline(0, color="k", lw=0.8)
    gamma_ax.set_ylabel(r"$\gamma$ = cos(G, w − endpoint)")
    eta_ax.set_yscale("log")
    eta_ax.set_ylabel(r"$\eta^*$ = ⟨G, w − endpoint⟩ / ‖G‖² (> 0)")
    for ax in (gamma_ax, eta_ax):
        ax.set_xlabel("progress towards the endpoint: step / the endpoint's step")
    fig.legend(*eta_ax.get_legend_handles_labels(), loc="outside lower center", ncols=4)
    fig.suptitle(f"{run}: the same path against other endpoints (median over sampled minibatches)")
    return fig
