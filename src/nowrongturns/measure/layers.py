"""gamma per layer, and gamma with the scale-invariant directions removed (gamma_tangent).

    layers = Layers(model, example_inputs)
    per_checkpoint = layers.checkpoint_stats(to_final64)          # [L] ||w_l - w*_l||^2
    per_gradient = layers.gradient_stats(grads64, to_final64)     # [n, 2L] ||G_l||^2, <G_l, d_l>
    tangent64 = layers.tangent(to_final64, weights64)             # w - w*, radial parts removed

A layer is one parameter tensor (`model.named_parameters()`), so the per-layer dots and squared
norms add up to the whole network's. Every sum is in float64, in the measure stage's one pass.

A weight whose output a BatchNorm normalizes directly (a convolution or linear layer feeding it)
is scale-invariant per output channel: the loss does not change when that channel's weights are
scaled, so each channel's gradient is orthogonal to its weights, and the part of w - w* along
them (the radial part) is out of any gradient's reach. gamma_tangent is the cosine of G with
w - w* once each such channel's radial part is removed: <G, P(w - w*)> / (||G|| ||P(w - w*)||).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch
from torch import nn

NORMALIZERS = (nn.modules.batchnorm._BatchNorm,)
FEEDERS = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)


def scale_invariant_weights(model: nn.Module, example_inputs: torch.Tensor) -> list[str]:
    """The names of the weights whose module's output is the very input of a BatchNorm, found by
    one forward pass of `example_inputs` (in eval mode, no gradient, the model left as it was)."""
    outputs, names, handles = {}, [], []

    def record(module_name):
        def hook(module, inputs, output):
            outputs[id(output)] = module_name

        return hook

    def check(module, inputs):
        fed_by = outputs.get(id(inputs[0]))
        if fed_by is not None:
            names.append(f"{fed_by}.weight" if fed_by else "weight")

    for name, module in model.named_modules():
        if isinstance(module, FEEDERS):
            handles.append(module.register_forward_hook(record(name)))
        elif isinstance(module, NORMALIZERS):
            handles.append(module.register_forward_pre_hook(check))
    training = model.training
    try:
        model.eval()
        with torch.no_grad():
            model(example_inputs)
    finally:
        model.train(training)
        for handle in handles:
            handle.remove()
    return sorted(set(names))


class Layers:
    """The flat parameter vector cut into its tensors, and its scale-invariant channels."""

    def __init__(self, model: nn.Module, example_inputs: torch.Tensor | None = None):
        named = list(model.named_parameters())
        self.names = [name for name, _ in named]
        self.sizes = [param.numel() for _, param in named]
        self.lengths: dict[torch.device, torch.Tensor] = {}  # self.sizes on each device used
        invariant = (
            set(scale_invariant_weights(model, example_inputs))
            if example_inputs is not None
            else set()
        )
        # (offset, channels, size of a channel) of each scale-invariant weight in the flat vector
        self.invariant, offset = [], 0
        for (name, param), size in zip(named, self.sizes):
            if name in invariant:
                self.invariant.append((offset, param.shape[0], size // param.shape[0]))
            offset += size

    @property
    def has_invariant(self) -> bool:
        return bool(self.invariant)

    def _sums(self, products: torch.Tensor) -> torch.Tensor:
        """[rows, L]: each row of `products` ([rows, d]) summed over each layer's span, in one
        op (a dot product per layer would cost one op each, which a deep model feels)."""
        lengths = self.lengths.get(products.device)
        if lengths is None:
            lengths = torch.tensor(self.sizes, device=products.device)
            self.lengths[products.device] = lengths
        return torch.segment_reduce(
            products, "sum", lengths=lengths.expand(len(products), -1), axis=1
        )

    def checkpoint_stats(self, to_final64: torch.Tensor) -> torch.Tensor:
        """[L] ||w_l - w*_l||^2 per layer."""
        return self._sums((to_final64 * to_final64)[None])[0]

    def gradient_stats(self, grads64: torch.Tensor, to_final64: torch.Tensor) -> torch.Tensor:
        """[n, 2L]: for each row G of `grads64` ([n, d]), ||G_l||^2 per layer, then
        <G_l, w_l - w*_l> per layer."""
        sums = self._sums(torch.cat([grads64 * grads64, grads64 * to_final64]))  # [2n, L]
        return torch.cat(sums.chunk(2), dim=1)

    def tangent(self, to_final64: torch.Tensor, weights64: torch.Tensor) -> torch.Tensor:
        """w - w* with the radial part of every scale-invariant channel removed: for channel
        weights w_c, d_c - (<d_c, w_c> / ||w_c||^2) w_c (a channel of zero weights unchanged)."""
        tangent = to_final64.clone()
        for offset, channels, size in self.invariant:
            span = slice(offset, offset + channels * size)
            d = to_final64[span].view(channels, size)
            w = weights64[span].view(channels, size)
            squares = (w * w).sum(1, keepdim=True)
            along = torch.where(squares > 0, (d * w).sum(1, keepdim=True) / squares, 0.0)
            tangent[span] = (d - along * w).reshape(-1)
        return tangent


def layers_table(values, labels: dict, names: list[str]) -> pd.DataFrame:
    """The layers table from per-row [L dist^2, L grad_norm^2, L dot] float64 values and the rows'
    labels (run, step, progress, source, sample): one row per (row, layer)."""
    count = len(names)
    rows = len(values)
    dist = values[:, :count] ** 0.5
    grad_norm = values[:, count : 2 * count] ** 0.5
    dot = values[:, 2 * count :]
    table = {
        key: np.repeat(np.broadcast_to(np.asarray(value), (rows,)), count)
        for key, value in labels.items()
    }
    table.update(
        {
            "layer": names * rows,
            "dist": dist.reshape(-1),
            "grad_norm": grad_norm.reshape(-1),
            "dot": dot.reshape(-1),
        }
    )
    frame = pd.DataFrame(table)
    frame["gamma"] = frame["dot"] / (frame["grad_norm"] * frame["dist"])
    return frame
