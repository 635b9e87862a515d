"""The run config a recorded trajectory carries: what the user says of the run (the model and
task factories the measure stage rebuilds them with), completed with what the optimizer says
of itself, so that the `update` source can replay one of its steps.

    run = recorded_run({"model": "mylab.nets:build", "task": "mylab.data:load"}, optimizer)
"""

from __future__ import annotations

import inspect
import json

import torch

from nowrongturns.optim.state import state_vector

# What a recorded run is, where the user does not say: the measure stage reads these keys.
RECORDED_DEFAULTS = {
    "seed": 0,
    "optimizer": "sgd",
    "lr": 0.0,
    "weight_decay": 0.0,
    "clip_grad_norm": None,
    "augment": "none",
    "schedule": "constant",
}
# An optimizer's own keys that are not among its options: set per step, or the parameters.
NOT_OPTIONS = ("params", "lr", "initial_lr", "weight_decay")


def optimizer_name(optimizer) -> str | None:
    """ "torch.optim.<Name>" for an optimizer of torch.optim's own classes with one parameter
    group (what the measure stage can rebuild and replay a step of), else None."""
    if not isinstance(optimizer, torch.optim.Optimizer) or len(optimizer.param_groups) != 1:
        return None
    name = type(optimizer).__name__
    return f"torch.optim.{name}" if getattr(torch.optim, name, None) is type(optimizer) else None


def optimizer_options(optimizer: torch.optim.Optimizer) -> dict:
    """The keyword arguments that rebuild `optimizer` (betas, momentum, ...) but lr and weight
    decay, from its parameter group, as JSON values."""
    accepted = inspect.signature(type(optimizer)).parameters
    group = optimizer.param_groups[0]
    options = {}
    for key, value in group.items():
        if key in NOT_OPTIONS or key not in accepted:
            continue
        value = list(value) if isinstance(value, tuple) else value
        if isinstance(value, torch.Tensor):
            value = value.item()
        json.dumps(value)  # a value a trajectory's config cannot hold stops here, named
        options[key] = value
    return options


def recorded_run(run: dict, optimizer) -> dict:
    """The user's `run` over RECORDED_DEFAULTS, its optimizer keys from `optimizer` where that
    is one measure can rebuild (optimizer_name)."""
    if not isinstance(run, dict) or "model" not in run or "task" not in run:
        raise ValueError(
            "Recorder: run must be a dict naming at least `model` and `task` (factories "
            '"module:function", or built-in names) so the measure stage can rebuild them; '
            f"got {run!r}"
        )
    run = {**RECORDED_DEFAULTS, **run}
    name = optimizer_name(optimizer)
    if name is not None:
        group = optimizer.param_groups[0]
        run.update(
            optimizer=name,
            optimizer_options=optimizer_options(optimizer),
            lr=float(group["lr"]),
            weight_decay=float(group.get("weight_decay", 0.0)),
        )
    return run


def optimizer_state(optimizer, run: dict) -> torch.Tensor:
    """The optimizer's state as the flat vector a checkpoint stores; empty where the run names
    no optimizer the measure stage can rebuild."""
    if optimizer_name(optimizer) is None:
        return torch.zeros(0)
    return state_vector(optimizer, run["optimizer"])
