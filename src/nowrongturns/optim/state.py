"""The optimizer's state as one flat float32 vector per checkpoint (/checkpoints/optimizer), and
back, exactly: resume, replay and the `update` source start from it.

    vector = state_vector(optimizer, run["optimizer"])        # torch.float32 [state_size]
    load_state_vector(optimizer, run["optimizer"], vector)    # the same state, bit for bit

The built-in optimizers keep their fixed layout (`BUILTIN_LAYOUT`; trajectories since format 1
store it). Any other torch optimizer ("torch.optim.NAdam") has its layout discovered: one step of
the same class and options on meta-device copies of the parameters shows every state key, its
shape and its device, without touching memory. Its vector holds, per parameter, a flag (1: the
state exists) then each key's values in sorted order, because missing state is not zeros for
every optimizer (NAdam's mu_product starts at 1, Adagrad's sum at its initial value).
"""

from __future__ import annotations

from typing import NamedTuple

import torch

# Per-parameter state of the built-in optimizers, in this order, with its size per parameter:
# "param" for a tensor shaped like the parameter, 1 for a scalar. Missing state is zeros.
BUILTIN_LAYOUT = {
    "sgd": (),
    "momentum": (("momentum_buffer", "param"),),
    "adam": (("step", 1), ("exp_avg", "param"), ("exp_avg_sq", "param")),
    "adamw": (("step", 1), ("exp_avg", "param"), ("exp_avg_sq", "param")),
}


class Slot(NamedTuple):
    """One state value of one parameter: where it lies in the vector and what it is."""

    param: torch.Tensor
    key: str  # "" for the flag that says whether the parameter has state
    shape: tuple[int, ...]
    dtype: torch.dtype | None  # None: the flag
    on_param_device: bool  # else on the CPU (the step counts of most optimizers)

    @property
    def size(self) -> int:
        return 1 if not self.shape else int(torch.Size(self.shape).numel())


def _params(optimizer: torch.optim.Optimizer) -> list[torch.Tensor]:
    return [p for group in optimizer.param_groups for p in group["params"]]


def _builtin_slots(optimizer, name: str) -> list[Slot]:
    return [
        Slot(param, key, tuple(param.shape) if size == "param" else (), param.dtype, key != "step")
        for key, size in BUILTIN_LAYOUT[name]
        for param in _params(optimizer)
    ]


def _discovered_state(optimizer: torch.optim.Optimizer) -> list[tuple[torch.device, dict]]:
    """(device of the copy, state) per parameter after one step of the optimizer's class and
    options on copies of the parameters: on the meta device (no memory), else as zeros beside
    each parameter, for the optimizers whose step reads a value (ASGD, Adafactor). The optimizer
    itself is untouched."""
    errors = []
    for device in ("meta", None):  # None: each parameter's own device
        shadows, groups = [], []
        for group in optimizer.param_groups:
            copies = [
                torch.nn.Parameter(torch.zeros_like(p, device=device)) for p in group["params"]
            ]
            for copy in copies:
                copy.grad = torch.zeros_like(copy)
            shadows += copies
            groups.append({**{k: v for k, v in group.items() if k != "params"}, "params": copies})
        try:
            shadow = type(optimizer)(groups)  # the groups hold every option
            shadow.step()
        except Exception as error:
            errors.append(f"{type(error).__name__}: {error}")
            continue
        return [(copy.device, shadow.state.get(copy, {})) for copy in shadows]
    raise ValueError(
        f"optimizer {type(optimizer).__name__}: its state cannot be laid out for the trajectory "
        f"(one step on copies of the parameters failed: {errors[-1]})"
    )


def _discovered_slots(optimizer) -> list[Slot]:
    slots = []
    for param, (copy_device, state) in zip(_params(optimizer), _discovered_state(optimizer)):
        slots.append(Slot(param, "", (), None, False))
        for key in sorted(state):
            value = state[key]
            if not isinstance(value, torch.Tensor):  # a float64 Python number would not round trip
                raise ValueError(
                    f"optimizer {type(optimizer).__name__}: state {key!r} is a "
                    f"{type(value).__name__}, which the trajectory's float32 vector cannot hold "
                    "exactly"
                )
            on_param_device = value.device == copy_device  # else the CPU (step counts)
            slots.append(Slot(param, key, tuple(value.shape), value.dtype, on_param_device))
    return slots


def slots(optimizer: torch.optim.Optimizer, name: str) -> tuple[Slot, ...]:
    """Every slot of the flat vector, in order (discovered once per optimizer)."""
    cache = optimizer.__dict__.setdefault("_nwt_state_slots", {})
    if name not in cache:
        cache[name] = tuple(
            _builtin_slots(optimizer, name)
            if name in BUILTIN_LAYOUT
            else _discovered_slots(optimizer)
        )
    return cache[name]


def state_size(optimizer: torch.optim.Optimizer, name: str) -> int:
    return sum(slot.size for slot in slots(optimizer, name))


def state_vector(optimizer: torch.optim.Optimizer, name: str) -> torch.Tensor:
    """The optimizer state, flat, float32. Built-in state not created yet (before the first
    step) is zeros, which those optimizers treat exactly as missing state."""
    params = _params(optimizer)
    # Built on the parameters' device, copied to the host once by the caller.
    device = params[0].device if params else torch.device("cpu")
    parts = []
    for slot in slots(optimizer, name):
        state = optimizer.state.get(slot.param)
        if slot.key == "":  # made on the device: no host tensor to copy over
            parts.append(torch.full((1,), float(bool(state)), device=device))
            continue
        value = state.get(slot.key) if state else None
        if value is None:
            parts.append(torch.zeros(slot.size, device=device))
        else:
            parts.append(torch.as_tensor(value).detach().reshape(-1).float().to(device))
    return torch.cat(parts) if parts else torch.zeros(0)


def load_state_vector(optimizer: torch.optim.Optimizer, name: str, vector) -> None:
    """Set the optimizer's state to the one `state_vector` flattened."""
    vector, offset, has_state = torch.as_tensor(vector), 0, True
    for slot in slots(optimizer, name):
        values = vector[offset : offset + slot.size]
        offset += slot.size
        if slot.key == "":  # a discovered layout: this parameter's state exists or does not
            has_state = bool(values[0])
            optimizer.state.pop(slot.param, None)
        elif not has_state:
            continue
        else:
            device = slot.param.device if slot.on_param_device else torch.device("cpu")
            value = values.reshape(slot.shape).to(device=device, dtype=slot.dtype).clone()
            optimizer.state[slot.param][slot.key] = value
