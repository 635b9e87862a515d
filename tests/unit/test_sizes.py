"""The torch-free counts of config/sizes.py against the real things: every model built (on the meta
device), every embedded and synthetic task loaded, the checkpoint steps listed."""

import dataclasses
import itertools

import numpy as np
import pytest
import torch
from helpers.runs import tiny_run

from nowrongturns.config import sizes
from nowrongturns.config.sizes import checkpoint_steps
from nowrongturns.models import MODELS, build_model
from nowrongturns.optim.optimizers import BUILTIN_OPTIMIZERS, build_optimizer
from nowrongturns.optim.state import state_size
from nowrongturns.tasks.load import load_task
from nowrongturns.trajectory.format import STEP_COLUMNS

# (task, model, sizes) covering every model, at sizes other than the defaults where they matter.
MODEL_CASES = [
    ("digits", "mlp", {"width": 7, "depth": 3}),
    ("digits", "cnn", {"width": 5, "depth": 3}),
    ("mnist5k", "resnet", {"width": 4, "depth": 2}),
    ("digits", "resnet18", {"width_multiplier": 0.5}),
    ("cifar10", "resnet18", {"width_multiplier": 2}),
    ("imagenet", "resnet50", {"width_multiplier": 1}),
    ("imagenet", "resnet152", {"width_multiplier": 0.5}),
    ("cifar100", "resnet50", {"width_multiplier": 1.5}),
    ("pydoc", "transformer", {"width": 12, "depth": 2, "heads": 3, "context": 20}),
    ("wikitext2", "transformer", {"width": 8, "depth": 1, "heads": 2, "context": 32}),
    ("mnist5k-seg", "unet", {"width": 3, "depth": 2}),
    ("vaihingen", "unet", {"width": 4, "depth": 3, "tile": 64}),
    ("mnist5k-seg", "segnet", {"width": 3, "depth": 3}),
    ("quadratic", "linear", {"width": 9}),
    ("rosenbrock", "point", {}),
]


def test_every_model_is_counted():
    assert {model for _, model, _ in MODEL_CASES} == set(MODELS) == set(sizes.MODELS)
    assert all(sizes.MODELS[name][0] == spec.kind for name, spec in MODELS.items())


@pytest.mark.parametrize("task, model, changes", MODEL_CASES)
def test_state_sizes_are_the_built_models(task, model, changes):
    run = tiny_run(task=task, model=model, **changes)
    facts = sizes.task_facts(run)
    with torch.device("meta"):
        built = build_model(run, facts)
        for optimizer in BUILTIN_OPTIMIZERS:
            counted = sizes.state_sizes({**run, "optimizer": optimizer}, facts)
            real = (
                sum(p.numel() for p in built.parameters()),
                sum(b.numel() for b in built.buffers()),
                state_size(build_optimizer({**run, "optimizer": optimizer}, built), optimizer),
            )
            assert counted == real, optimizer


@pytest.mark.parametrize("optimizer", ["ASGD", "Adadelta", "NAdam", "RAdam", "Rprop"])
def test_a_torch_optimizers_state_is_within_its_counted_bound(optimizer):
    """RMSprop centered with momentum reaches the bound's three values per parameter."""
    run = tiny_run(model="cnn", optimizer=f"torch.optim.{optimizer}")
    facts = sizes.task_facts(run)
    built = build_model(run, facts)
    real = state_size(build_optimizer(run, built), run["optimizer"])
    params = sum(p.numel() for p in built.parameters())
    tensors = len(list(built.parameters()))
    assert real <= sizes.state_sizes(run, facts)[2] == 3 * params + 4 * tensors
    rmsprop = {
        **run,
        "optimizer": "torch.optim.RMSprop",
        "optimizer_options": {"centered": True, "momentum": 0.9},
    }
    assert state_size(build_optimizer(rmsprop, built), rmsprop["optimizer"]) >= 3 * params


# (task, model, sizes, input shape): odd sides, and above 64 pixels the ImageNet stem.
BATCHNORM_CASES = [
    ("digits", "cnn", {}, None),
    ("mnist5k", "resnet", {"depth": 1}, None),
    ("digits", "resnet18", {"width_multiplier": 0.25}, None),
    ("cifar10", "resnet18", {"width_multiplier": 0.25}, (3, 33, 31)),
    ("imagenet", "resnet50", {"width_multiplier": 0.25}, (3, 75, 61)),
    ("mnist5k-seg", "unet", {"width": 2, "depth": 2}, (1, 29, 27)),
    ("mnist5k-seg", "segnet", {"width": 2, "depth": 3}, None),
    ("digits", "mlp", {}, None),
    ("pydoc", "transformer", {"width": 8, "heads": 2}, None),
    ("rosenbrock", "point", {}, None),
]


@pytest.mark.parametrize("task, model, changes, shape", BATCHNORM_CASES)
def test_smallest_batchnorm_map_is_the_built_models(task, model, changes, shape):
    run = tiny_run(task=task, model=model, **changes)
    facts = sizes.task_facts(run)
    if shape:
        facts = dataclasses.replace(facts, input_shape=shape)
    built, seen = build_model(run, facts), []

    def pixels(module, inputs, output):
        seen.append(inputs[0][0, 0].numel())

    for module in built.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.register_forward_hook(pixels)
    dtype = torch.long if facts.kind == "language" else torch.float32
    built(torch.zeros(2, *facts.input_shape, dtype=dtype))
    assert sizes.smallest_batchnorm_map(run, facts) == (min(seen) if seen else None)


@pytest.mark.parametrize(
    "changes",
    [
        {"task": "digits"},
        {"task": "mnist5k"},
        {"task": "mnist5k-seg", "model": "segnet"},
        {"task": "pydoc", "model": "transformer", "context": 33},
        {"task": "quadratic", "model": "linear", "width": 5},
        {"task": "rosenbrock", "model": "point"},
    ],
)
def test_task_facts_are_the_loaded_tasks(changes):
    run = tiny_run(**changes)
    facts, task = sizes.task_facts(run), load_task(run)
    assert facts.exact
    assert (facts.kind, facts.num_classes, facts.input_shape, facts.train_examples) == (
        task.kind,
        task.num_classes,
        tuple(task.input_shape),
        task.train_size,
    )


def test_checkpoint_count_is_the_number_of_checkpoint_steps():
    for total, first, every in itertools.product(range(0, 40), range(1, 12), range(1, 12)):
        expected = len(checkpoint_steps(total, first, every))
        assert sizes.checkpoint_count(total, first, every) == expected, (total, first, every)
    # 0..9, the 10**10 - 1 multiples of 10**20 from 10 on, the last: no list is built
    assert sizes.checkpoint_count(10**30, 10, 10**20) == 10 + (10**10 - 1) + 1


def test_step_row_bytes_are_the_step_columns():
    assert sizes.STEP_ROW_BYTES == sum(np.dtype(t).itemsize for t in STEP_COLUMNS.values())
