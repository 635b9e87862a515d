"""The geometry table: what accumulates per gradient in float64 on the device, and the table's
columns derived from it (RSI, EB, gamma, z, the weight-decay and control columns).

    at_checkpoint = checkpoint_stats(weights64, to_final64, to_other64)
    row = torch.cat([loss, at_checkpoint, gradient_stats(grad, weights64, to_final64, decay, None)])
    table = geometry_table(rows, {"run": ..., "step": ...}, param_count)
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import torch

from nowrongturns.trajectory.reader import TrajectoryReader

COLUMNS = [
    "run",
    "step",
    "epoch",
    "progress",
    "source",
    "sample",
    "loss",
    "dist",
    "grad_norm",
    "dot",
    "rsi",
    "eb",
    "gamma",
    "z",
    "grad_norm_wd",
    "dot_wd",
    "rsi_wd",
    "eb_wd",
    "gamma_wd",
    "gamma_origin",
    "gamma_other",
    "gamma_tangent",
]


# What accumulates on the device per gradient: squares of norms, and dot products. The first five
# are the checkpoint's (checkpoint_stats), the others the gradient's (gradient_stats).
ACCUMULATED = [
    "loss",
    "dist",
    "weight_norm",
    "other_dist",
    "tangent_dist",
    "grad_norm",
    "dot",
    "grad_norm_wd",
    "dot_wd",
    "dot_origin",
    "dot_other",
    "dot_tangent",
]


def checkpoint_stats(weights64, to_final64, to_other64, tangent64=None) -> torch.Tensor:
    """[||w - w*||^2, ||w||^2, ||w - w*'||^2, ||P(w - w*)||^2] in float64: w*' the final point of
    the run that differs only in its seed, `to_other64` = w - w*', `tangent64` = P(w - w*) with
    the scale-invariant directions removed (measure/layers.py); None where there is none: NaN."""
    stats = [to_final64 @ to_final64, weights64 @ weights64]
    nan = torch.full_like(stats[0], math.nan)
    stats += [to_other64 @ to_other64 if to_other64 is not None else nan]
    return torch.stack([*stats, tangent64 @ tangent64 if tangent64 is not None else nan])


def gradient_stats(
    grad, weights64, to_final64, weight_decay: float, to_other64, tangent64=None
) -> torch.Tensor:
    """[grad_norm^2, <G, w - w*>, the same two for G + weight_decay * w, the controls <G, w>
    and <G, w - w*'>, and <G, P(w - w*)>], in float64 (NaN where weight decay is 0, or where there
    is no w*' or P)."""
    grad64 = grad.double()
    stats = [grad64 @ grad64, grad64 @ to_final64]
    nan = torch.full_like(stats[0], math.nan)
    if weight_decay:
        grad_wd = grad64 + weight_decay * weights64
        stats += [grad_wd @ grad_wd, grad_wd @ to_final64]
    else:
        stats += [nan, nan]
    stats += [grad64 @ weights64, grad64 @ to_other64 if to_other64 is not None else nan]
    stats += [grad64 @ tangent64 if tangent64 is not None else nan]
    return torch.stack(stats)


def other_final_point(trajectory: str | None, param_count: int, device) -> torch.Tensor | None:
    """w*' in float64 on `device`: the last weights of the seed sibling's trajectory (None where
    the run has none)."""
    if trajectory is None:
        return None
    with TrajectoryReader(trajectory) as other:
        if other.param_count != param_count:
            raise ValueError(
                f"{trajectory}: {other.param_count} parameters, not the {param_count} of the run "
                "it is the seed sibling of (--other-final must be a run differing only in seed)"
            )
        return torch.from_numpy(other.weights(-1)).to(device).double()


def geometry_table(accumulated: np.ndarray, labels: dict, param_count: int) -> pd.DataFrame:
    """The geometry table (docs/formats.md#geometryparquet) from the accumulated
    [rows, ACCUMULATED] float64 values and the rows' other columns (`labels`: run, step, epoch,
    progress, source, sample, and any extra): RSI, EB, gamma and z derived
    (docs/quantities.md#rsi-eb-and-gamma), built in one go, as numpy arrays."""
    columns = dict(zip(ACCUMULATED, accumulated.T))
    for column in (
        "dist",
        "weight_norm",
        "other_dist",
        "tangent_dist",
        "grad_norm",
        "grad_norm_wd",
    ):
        columns[column] = np.sqrt(columns[column])  # accumulated as squares
    dist = columns["dist"]
    for suffix in ("", "_wd"):
        grad_norm, dot = columns[f"grad_norm{suffix}"], columns[f"dot{suffix}"]
        columns[f"rsi{suffix}"] = dot / dist**2
        columns[f"eb{suffix}"] = grad_norm / dist
        columns[f"gamma{suffix}"] = dot / (grad_norm * dist)
    # The controls: the cosine of G with w itself, and with w - w*' of the seed sibling; and
    # with w - w* without its scale-invariant directions.
    for control, norm in (
        ("origin", "weight_norm"),
        ("other", "other_dist"),
        ("tangent", "tangent_dist"),
    ):
        dot = columns[f"dot_{control}"]
        columns[f"gamma_{control}"] = dot / (columns["grad_norm"] * columns[norm])
    columns["z"] = columns["gamma"] * math.sqrt(param_count)
    columns.update(labels)
    extra = [name for name in labels if name not in COLUMNS]
    return pd.DataFrame({name: columns[name] for name in [*COLUMNS, *extra]})
