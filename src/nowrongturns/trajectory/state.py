"""A model's training state as the flat vectors a checkpoint stores, and back: w (every trainable
parameter, in `model.parameters()` order), the buffers, the optimizer state and the RNG states.

    load_flat(model, traj.weights(index), traj.buffers(index))
    set_rng_states(traj.rng_states(index), device)
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from nowrongturns.optim.state import state_vector


def flat_parameters(model: nn.Module) -> torch.Tensor:
    """w: every trainable parameter, flattened in `model.parameters()` order."""
    return torch.cat([p.detach().reshape(-1) for p in model.parameters()])


def flat_buffers(model: nn.Module) -> torch.Tensor:
    buffers = [b.detach().reshape(-1).float() for b in model.buffers()]
    return torch.cat(buffers) if buffers else torch.zeros(0)


def load_flat(model: nn.Module, weights, buffers) -> None:
    """Put a flat weight vector (and buffer vector) back into the model, in place."""
    weights = torch.as_tensor(weights)
    buffers = torch.as_tensor(buffers)
    with torch.no_grad():
        offset = 0
        for param in model.parameters():
            param.copy_(weights[offset : offset + param.numel()].view_as(param))
            offset += param.numel()
        offset = 0
        for buffer in model.buffers():
            buffer.copy_(buffers[offset : offset + buffer.numel()].view_as(buffer))
            offset += buffer.numel()


def rng_states(device: torch.device) -> dict[str, np.ndarray]:
    states = {"cpu": torch.get_rng_state().numpy()}
    if device.type == "cuda":
        states["cuda"] = torch.cuda.get_rng_state(device).numpy()
    return states


def set_rng_states(states: dict[str, np.ndarray], device: torch.device) -> None:
    torch.set_rng_state(torch.from_numpy(states["cpu"]))
    if device.type == "cuda":
        torch.cuda.set_rng_state(torch.from_numpy(states["cuda"]), device)


def checkpoint_state(model, optimizer, optimizer_name: str, device) -> dict[str, np.ndarray]:
    """Host copies of everything training needs to go on from here."""
    return {
        "weights": flat_parameters(model).cpu().numpy(),
        "buffers": flat_buffers(model).cpu().numpy(),
        "optimizer_state": state_vector(optimizer, optimizer_name).cpu().numpy(),
        "rng_states": rng_states(device),
    }
