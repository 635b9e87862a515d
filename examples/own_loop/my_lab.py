"""A lab's own data and network, as its training loop (train.py) uses them, and the two
factories through which the workflow rebuilds the same ones to measure the recorded path:

    base:
      task: "my_lab:spirals"        # spirals(run) -> nowrongturns.Task, over the same arrays
      model: "my_lab:small_mlp"     # small_mlp(input_shape, num_classes, run) -> nn.Module
"""

import math

import numpy as np
from torch import nn

from nowrongturns import Task


def spiral_arrays(count: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Three interleaved noisy spirals in the plane: points float32 [count, 2], arms [count]."""
    rng = np.random.default_rng(seed)
    arms = rng.integers(0, 3, count)
    radius = rng.uniform(0.1, 1.0, count)
    angle = 3 * math.pi * radius + 2 * math.pi * arms / 3
    points = np.stack([radius * np.cos(angle), radius * np.sin(angle)], axis=1)
    return (points + rng.normal(0, 0.03, points.shape)).astype(np.float32), arms


TRAIN, VALIDATION = spiral_arrays(1000, seed=0), spiral_arrays(250, seed=1)


def spirals(run: dict) -> Task:
    """The task factory: the very arrays the loop trains on, so that the indices the loop
    recorded pick the same examples."""
    return Task.from_arrays("classification", *TRAIN, num_classes=3, validation=VALIDATION)


def small_mlp(input_shape, num_classes: int, run: dict) -> nn.Module:
    """The model factory: the network the loop trains (its weights come from the recording)."""
    return nn.Sequential(
        nn.Linear(input_shape[0], 64),
        nn.Tanh(),
        nn.Linear(64, 64),
        nn.Tanh(),
        nn.Linear(64, num_classes),
    )
