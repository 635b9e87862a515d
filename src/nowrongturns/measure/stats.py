"""The geometry table: what accumulates per gradient in float64 on the device, and the table's
columns derived from it (RSI, EB, gamma, z, the weight-decay and control columns).

    at_checkpoint = checkpoint_stats(weights64, to_final64, to_other64)      # [4]
    per_gradient = gradient_stats(grads, decays, weights64, to_final64, None)  # [n, 7]
    rows = torch.cat([losses[:, None], at_checkpoint.expand(n, -1), per_gradient], dim=1)
    table = geometry_table(rows.cpu().numpy(), {"run": ..., "step": ...}, param_count)
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
    grads, decays, weights64, to_final64, to_other64, tangent64=None
) -> torch.Tensor:
    """[n, 7]: for each row G of `grads` ([n, d]) [||G||^2, <G, w - w*>, the same two for
    G + decay * w, the controls <G, w> and <G, w - w*'>, and <G, P(w - w*)>], in float64 (NaN
    where the row's entry of `decays` is 0, or where there is no w*' or P). The rows are taken
    together, a handful of matrix ops in all: op by op, a dozen per gradient cost a small model
    as much as a few percent of its backward pass."""
    grads64 = grads.double()
    count = len(grads64)
    nan = torch.full((count,), math.nan, dtype=torch.float64, device=grads64.device)
    directions = [d for d in (to_final64, weights64, to_other64, tangent64) if d is not None]
    dots = grads64 @ torch.stack(directions).T  # [n, 2 to 4]
    squares = torch.linalg.vecdot(grads64, grads64)
    decays64 = torch.tensor(decays, dtype=torch.float64, device=grads64.device)
    if any(decays):
        with_decay = grads64 + decays64[:, None] * weights64
        no_decay = decays64 == 0
        squares_wd = torch.linalg.vecdot(with_decay, with_decay).masked_fill(no_decay, math.nan)
        dots_wd = (with_decay @ to_final64).masked_fill(no_decay, math.nan)
    else:
        squares_wd = dots_wd = nan
    other = dots[:, 2] if to_other64 is not None else nan
    tangent = dots[:, -1] if tangent64 is not None else nan
    return torch.stack(
        [squares, dots[:, 0], squares_wd, dots_wd, dots[:, 1], other, tangent], dim=1
    )


# Gradient values held for their statistics to be taken together: 2^24, 128 MiB in float64, a
# block of a dozen gradients of a small model, of one of a ResNet-18.
BLOCK_VALUES = 2**24


class CheckpointRows:
    """The float64 rows of one checkpoint, [loss, checkpoint_stats, gradient_stats] and with
    `layers` (measure/layers.py) [L dist^2, L grad_norm^2, L dot] per layer: the gradients are
    held as they come, and their statistics taken a block at a time."""

    def __init__(self, weights64, to_final64, to_other64, tangent64, layers=None):
        self.weights64, self.to_final64 = weights64, to_final64
        self.to_other64, self.tangent64, self.layers = to_other64, tangent64, layers
        self.at_checkpoint = checkpoint_stats(weights64, to_final64, to_other64, tangent64)
        if layers is not None:
            self.layer_dists = layers.checkpoint_stats(to_final64)
        self.held: list[tuple] = []  # (loss, gradient, weight decay) of the block being filled
        self.blocks: list[torch.Tensor] = []

    def add(self, loss: torch.Tensor, grad: torch.Tensor, weight_decay: float) -> None:
        self.held.append((loss, grad, weight_decay))
        if len(self.held) * len(grad) >= BLOCK_VALUES:
            self._take_block()

    def rows(self) -> torch.Tensor:
        """[gradients added, columns], on the device."""
        if self.held:
            self._take_block()
        return torch.cat(self.blocks)

    def _take_block(self) -> None:
        losses, grads, decays = zip(*self.held)
        self.held = []
        grads64 = torch.stack(grads).double()
        per_gradient = gradient_stats(
            grads64, decays, self.weights64, self.to_final64, self.to_other64, self.tangent64
        )
        count = len(grads)
        block = [torch.stack(losses).double()[:, None], self.at_checkpoint.expand(count, -1)]
        block += [per_gradient]
        if self.layers is not None:
            block += [self.layer_dists.expand(count, -1)]
            block += [self.layers.gradient_stats(grads64, self.to_final64)]
        self.blocks.append(torch.cat(block, dim=1))


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
