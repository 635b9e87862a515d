"""Synthetic tasks: the model is the parameter vector w itself."""

from __future__ import annotations

import torch
from torch import nn


def linear(input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    """Least squares' model x -> x . w, one weight vector w of the task's input size d and no
    bias: [B, d] -> [B, 1] (num_classes is 1). PyTorch's default init, w_j ~ U(-1/sqrt(d),
    1/sqrt(d)), from the run seed."""
    return nn.Linear(input_shape[0], num_classes, bias=False)


POINT_START = (-1.5, 2.0)  # across Rosenbrock's valley from where its first steps fall
POINT_JITTER = 0.01  # the run seed moves the start by N(0, POINT_JITTER^2 I)


class Point(nn.Module):
    """A point w in R^n as the model: every example's output is w itself, [B, ...] -> [B, n]."""

    def __init__(self, start: torch.Tensor):
        super().__init__()
        self.position = nn.Parameter(start)

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        return self.position.expand(len(inputs), -1)


def point(input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    """The point w of a 2-D objective, started at POINT_START plus N(0, POINT_JITTER^2 I) drawn
    from the run seed (so seeds differ slightly), never from a default init."""
    start = torch.tensor(POINT_START) + POINT_JITTER * torch.randn(len(POINT_START))
    return Point(start)
