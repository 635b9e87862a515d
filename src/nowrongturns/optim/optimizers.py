"""Optimizers from a run config (their state as a vector: state.py; the learning rates they step
with: learning_rates.py).

optimizer = build_optimizer(run, model)
"""

from __future__ import annotations

import inspect

import torch

BUILTIN_OPTIMIZERS = ("sgd", "momentum", "adam", "adamw")
TORCH_OPTIM = "torch.optim."


def build_optimizer(run: dict, model: torch.nn.Module) -> torch.optim.Optimizer:
    """Weight decay is coupled (added to the gradient) except in AdamW, where it is decoupled.
    "torch.optim.<Name>": that class with `optimizer_options` and the run's `weight_decay`."""
    params, lr, decay = model.parameters(), run["lr"], run["weight_decay"]
    name = run["optimizer"]
    if name.startswith(TORCH_OPTIM):
        return torch_optimizer(name, params, lr, decay, run.get("optimizer_options") or {})
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, weight_decay=decay)
    if name == "momentum":
        return torch.optim.SGD(
            params, lr=lr, momentum=run["momentum"], nesterov=run["nesterov"], weight_decay=decay
        )
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=decay)
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=decay)
    raise ValueError(f"optimizer {name!r} is unknown; known: {', '.join(BUILTIN_OPTIMIZERS)}")


def torch_optimizer(name: str, params, lr: float, decay: float, options: dict):
    """A torch.optim class by its dotted name; JSON lists in `options` (betas) become tuples.
    Its lr is set at every step from the schedule."""
    found = getattr(torch.optim, name.removeprefix(TORCH_OPTIM), None)
    if not (isinstance(found, type) and issubclass(found, torch.optim.Optimizer)):
        raise ValueError(f"optimizer {name!r}: torch.optim has no optimizer of that name")
    if found is torch.optim.LBFGS:
        raise ValueError(f"optimizer {name!r} steps with a closure, which training does not give")
    options = {key: tuple(v) if isinstance(v, list) else v for key, v in options.items()}
    if "weight_decay" in inspect.signature(found).parameters:
        options["weight_decay"] = decay
    elif decay:
        raise ValueError(f"weight_decay {decay}: optimizer {name!r} takes no weight decay")
    try:
        return found(params, lr=lr, **options)
    except (TypeError, ValueError) as error:
        raise ValueError(f"optimizer {name!r} with optimizer_options {options}: {error}") from None
