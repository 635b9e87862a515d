"""Models, built from a run config and the task they learn.

`build_model(run, task)` picks the model named by the run key `model` and sizes it with the run
keys each model reads (`width`, `depth`, `heads`, `width_multiplier`; see `MODELS`). One module
per kind of task: classification, segmentation, language, synthetic. Every model has no dropout and
runs deterministically, including under `torch.use_deterministic_algorithms(True)`, which training
sets: the measurement stage needs a gradient to be a pure function of weights and minibatch.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from .classification import cnn, mlp, resnet, resnet18, resnet50, resnet152
from .language import transformer
from .segmentation import max_unpool, segnet, unet
from .synthetic import linear, point

__all__ = ["MODELS", "ModelSpec", "build_model", "max_unpool", "resolve_device"]


def resolve_device(name: str) -> torch.device:
    """`auto` picks CUDA where present, else the CPU."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device 'cuda' was asked for, but torch sees no CUDA device")
    return torch.device(name)


@dataclass(frozen=True)
class ModelSpec:
    build: Callable[..., nn.Module]  # (input_shape, num_classes, **run keys) -> model
    kind: str  # the kind of task it predicts for (data.KINDS)
    keys: tuple[str, ...] = ("width", "depth")  # the run keys it is sized by


MODELS = {
    "mlp": ModelSpec(mlp, "classification"),
    "cnn": ModelSpec(cnn, "classification"),
    "resnet": ModelSpec(resnet, "classification"),
    "resnet18": ModelSpec(resnet18, "classification", keys=("width_multiplier",)),
    "resnet50": ModelSpec(resnet50, "classification", keys=("width_multiplier",)),
    "resnet152": ModelSpec(resnet152, "classification", keys=("width_multiplier",)),
    "transformer": ModelSpec(transformer, "language", keys=("width", "depth", "heads")),
    "unet": ModelSpec(unet, "segmentation"),
    "segnet": ModelSpec(segnet, "segmentation"),
    "linear": ModelSpec(linear, "regression", keys=()),
    "point": ModelSpec(point, "objective", keys=()),
}


def build_model(run: dict, task) -> nn.Module:
    """The model a run config names, shaped for the task's inputs and outputs."""
    name = run["model"]
    if name not in MODELS:
        raise ValueError(f"model {name!r} is unknown; known models: {', '.join(MODELS)}")
    spec = MODELS[name]
    if task.kind != spec.kind:
        raise ValueError(f"model {name!r} is for {spec.kind} tasks, not {task.kind} tasks")
    sizes = {key: run[key] for key in spec.keys}
    return spec.build(tuple(task.input_shape), task.num_classes, **sizes)
