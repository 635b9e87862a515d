"""A lab's own model and data, measured by nowrongturns through the config alone:

    base:
      task: "my_lab:spirals"        # spirals(run) -> nowrongturns.Task
      model: "my_lab:residual_mlp"  # residual_mlp(input_shape, num_classes, run) -> nn.Module

Nothing here imports the workflow: the task is built with the public constructor
`Task.from_datasets` (torch Datasets read example by example; `Task.from_arrays` takes arrays in
memory), the model is any torch module. Snakemake imports this file from the working directory.
"""

import math

import numpy as np
import torch
from torch import nn

from nowrongturns import Task


class Spirals(torch.utils.data.Dataset):
    """Three interleaved noisy spirals in the plane: (point float32 [2], arm 0..2)."""

    def __init__(self, count: int, seed: int):
        rng = np.random.default_rng(seed)
        self.arms = rng.integers(0, 3, count)
        radius = rng.uniform(0.1, 1.0, count)
        angle = 3 * math.pi * radius + 2 * math.pi * self.arms / 3
        points = np.stack([radius * np.cos(angle), radius * np.sin(angle)], axis=1)
        self.points = (points + rng.normal(0, 0.03, points.shape)).astype(np.float32)

    def __len__(self) -> int:
        return len(self.points)

    def __getitem__(self, index: int):
        return self.points[index], int(self.arms[index])


def spirals(run: dict) -> Task:
    """The task factory: its own training and validation sets (fixed seeds, not the run's)."""
    return Task.from_datasets(
        "classification", Spirals(1000, seed=0), Spirals(250, seed=1), num_classes=3
    )


class ResidualMLP(nn.Module):
    def __init__(self, inputs: int, width: int, blocks: int, classes: int):
        super().__init__()
        self.embed = nn.Linear(inputs, width)
        self.blocks = nn.ModuleList(
            nn.Sequential(nn.LayerNorm(width), nn.Linear(width, width), nn.GELU())
            for _ in range(blocks)
        )
        self.head = nn.Linear(width, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.embed(x)
        for block in self.blocks:
            x = x + block(x)
        return self.head(x)


def residual_mlp(input_shape: tuple[int, ...], num_classes: int, run: dict) -> nn.Module:
    """The model factory: sized by the run keys `width` and `depth`, as the built-in models are."""
    return ResidualMLP(input_shape[0], run["width"], run["depth"], num_classes)
