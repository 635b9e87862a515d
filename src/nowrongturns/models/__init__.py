"""Models, built from a run config and the task they learn.

`build_model(run, task)` picks the model named by the run key `model` and sizes it with the run keys
each model reads (`width`, `depth`, `heads`, `width_multiplier`; see `MODELS`), or calls the factory
it names: "package.module:function" or "timm/<name>" (config/factories.py), whose output on two
training examples is checked against the task before any step. One module per kind of task:
classification, segmentation, language, synthetic. Every model has no dropout and runs
deterministically, including under `torch.use_deterministic_algorithms(True)`, which training sets:
the measurement stage needs a gradient to be a pure function of weights and minibatch.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from nowrongturns.config import factories
from nowrongturns.models.classification import cnn, mlp, resnet, resnet18, resnet50, resnet152
from nowrongturns.models.language import transformer
from nowrongturns.models.segmentation import max_unpool, segnet, unet
from nowrongturns.models.synthetic import linear, point

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
    if name.startswith(factories.TIMM_PREFIX) or factories.is_factory(name):
        if name.startswith(factories.TIMM_PREFIX):
            model = factories.timm_model(name, tuple(task.input_shape), task.num_classes)
        else:
            model = factories.call(
                "model", name, nn.Module, tuple(task.input_shape), task.num_classes, run
            )
        check_output(model, task, name)
        return model
    if name not in MODELS:
        raise ValueError(f"model {name!r} is unknown; known models: {', '.join(MODELS)}")
    spec = MODELS[name]
    if task.kind != spec.kind:
        raise ValueError(f"model {name!r} is for {spec.kind} tasks, not {task.kind} tasks")
    sizes = {key: run[key] for key in spec.keys}
    return spec.build(tuple(task.input_shape), task.num_classes, **sizes)


def expected_output(task, targets: torch.Tensor) -> tuple[int, ...]:
    """The output shape the task's loss takes for a batch with these targets."""
    if task.kind == "classification":
        return (len(targets), task.num_classes)
    if task.kind == "segmentation":  # classes before the pixels, as torchvision's models give
        return (len(targets), task.num_classes, *targets.shape[1:])
    if task.kind == "language":
        return (*targets.shape, task.num_classes)
    return (len(targets),) if task.kind == "regression" else (len(targets), task.num_classes)


def check_output(model: nn.Module, task, name: str) -> None:
    """Refuse a model whose output on two training examples does not fit the task. In eval mode
    and without gradients, so that no weight, buffer or random stream changes."""
    inputs, targets = task.batch(torch.arange(min(2, task.train_size)))
    was_training = model.training
    try:
        with torch.no_grad():
            outputs = model.eval()(inputs.cpu())
    except Exception as error:
        raise factories.FactoryError(
            f"model {name!r} fails on the task's inputs {tuple(inputs.shape)}: "
            f"{type(error).__name__}: {error}"
        ) from error
    finally:
        model.train(was_training)
    wanted = expected_output(task, targets)
    shape = tuple(outputs.shape) if isinstance(outputs, torch.Tensor) else None
    if shape != wanted and not (task.kind == "regression" and shape == (*wanted, 1)):
        raise factories.FactoryError(
            f"model {name!r} outputs {shape or type(outputs).__name__} on a batch of "
            f"{len(targets)}, where the {task.kind} task {task.name!r} needs {wanted}"
        )
