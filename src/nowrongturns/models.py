"""Models, built from a run config and the task's input shape."""

from __future__ import annotations

import math

import torch
from torch import nn


def resolve_device(name: str) -> torch.device:
    """`auto` picks CUDA where present, else the CPU."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device 'cuda' was asked for, but torch sees no CUDA device")
    return torch.device(name)


def mlp(input_shape: tuple[int, ...], num_classes: int, width: int) -> nn.Module:
    """Two hidden ReLU layers of `width` units."""
    return nn.Sequential(
        nn.Flatten(),
        nn.Linear(math.prod(input_shape), width),
        nn.ReLU(),
        nn.Linear(width, width),
        nn.ReLU(),
        nn.Linear(width, num_classes),
    )


def cnn(input_shape: tuple[int, ...], num_classes: int, width: int) -> nn.Module:
    """Two 3x3 conv + BatchNorm + ReLU blocks, a 2x2 max-pool and a linear head."""
    channels, height, breadth = input_shape
    return nn.Sequential(
        nn.Conv2d(channels, width, 3, padding=1),
        nn.BatchNorm2d(width),
        nn.ReLU(),
        nn.Conv2d(width, 2 * width, 3, padding=1),
        nn.BatchNorm2d(2 * width),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(2 * width * (height // 2) * (breadth // 2), num_classes),
    )


MODELS = {"mlp": mlp, "cnn": cnn}


def build_model(run: dict, task) -> nn.Module:
    """The model a run config names, shaped for the task's inputs and outputs."""
    if run["model"] not in MODELS:
        raise ValueError(f"model {run['model']!r} is unknown; known models: {', '.join(MODELS)}")
    return MODELS[run["model"]](task.input_shape, task.num_classes, run["width"])
