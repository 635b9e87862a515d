"""Curvature at one point of weight space: Hessian-vector products accumulated over chunks, the top
eigenvalue by Lanczos, the curvature of a minibatch along its own gradient, Adam's
preconditioner, and the step size's stability threshold of each optimizer.

Memory: a product rebuilds each chunk's graph (a forward and a backward pass with create_graph, then
one more backward through it) and frees it before the next chunk, so that it holds one chunk's
graph at a time, a chunk being one shard of a training minibatch (evaluation.py), whatever the
number of examples the Hessian is of. One chunk's graph still holds about twice a training step's
activations (the gradient's own graph beside the forward's): where that does not fit on a GPU,
the product keeps the tensors its graphs save in host memory (torch's save_on_cpu) and the GPU
holds about one training step (benchmarks/sharpness_memory.py), at the cost of copies over the bus.
"""

from __future__ import annotations

import contextlib
import math
import sys
from collections.abc import Callable, Iterable

import numpy as np
import torch
from torch.nn.attention import SDPBackend, sdpa_kernel

from nowrongturns.optim.state import load_state_vector

Product = Callable[[torch.Tensor], torch.Tensor]  # float64 vector -> float64 vector


def top_eigenvalue(
    product: Product, start: torch.Tensor, iterations: int, tolerance: float
) -> tuple[float, int, float]:
    """(lambda_max, products taken, relative Ritz residual) of the symmetric operator `product`,
    by Lanczos from `start`, stopping once the residual ||H s - theta s|| of the top Ritz pair is
    at most `tolerance` |theta| (for a symmetric matrix, an eigenvalue lies that close to theta)
    or the Krylov space is exhausted."""
    # The Lanczos vectors as rows, filled in place (stacking a list would copy them all at each
    # iteration: for ResNet-152, 20 float64 vectors are 9.6 GB).
    basis = start.new_empty((iterations, len(start)))
    basis[0] = start / start.norm()
    diagonal, off_diagonal = [], []
    theta, residual = 0.0, np.inf
    for used in range(1, iterations + 1):
        vector = product(basis[used - 1])
        diagonal.append(float(basis[used - 1] @ vector))
        # Full reorthogonalization, twice ("twice is enough"): in floating point the plain
        # three-term recurrence loses orthogonality once an eigenvalue converges.
        for _ in range(2):
            vector -= basis[:used].T @ (basis[:used] @ vector)
        beta = float(vector.norm())
        tridiagonal = np.diag(diagonal) + np.diag(off_diagonal, 1) + np.diag(off_diagonal, -1)
        values, vectors = np.linalg.eigh(tridiagonal)
        theta = float(values[-1])
        residual = beta * abs(vectors[-1, -1]) / max(abs(theta), 1e-300)
        if residual <= tolerance or beta <= 1e-12 * max(abs(theta), 1e-300):
            return theta, used, residual
        off_diagonal.append(beta)
        if used < iterations:
            basis[used] = vector / beta
    return theta, iterations, residual


def _flat(parts) -> torch.Tensor:
    return torch.cat([part.reshape(-1) for part in parts])


class Offload:
    """Where the Hessian-vector products given this Offload keep the tensors their graphs save:
    in host memory where `on`; where `on` is None, on the device until one of them runs out of
    its memory, in host memory from then on (for all of them: a job asks once)."""

    def __init__(self, on: bool | None = None):
        self.on = on

    def saving(self, device: torch.device):
        if not self.on:
            return contextlib.nullcontext()
        # Pinned on a GPU: the copies back to it then overlap its work.
        return torch.autograd.graph.save_on_cpu(pin_memory=device.type == "cuda")

    def give_up_device(self, device: torch.device, message: str) -> None:
        self.on = True
        if device.type == "cuda":
            torch.cuda.empty_cache()
        print(
            f"Hessian-vector product: out of memory ({message}); the tensors the products' "
            "graphs save now go to host memory (about one training step on the device, slower)",
            file=sys.stderr,
        )


def hessian_product(
    loss_of: Callable,
    params: list,
    chunks: Iterable[tuple[torch.Tensor, torch.Tensor, float]],
    offload: Offload | None = None,
) -> Product:
    """v -> sum_c weight_c H_c v, H_c the Hessian of loss_of(inputs, targets) of chunk c, one
    chunk's graph at a time, the graphs' saved tensors where `offload` says (by default, as
    Offload())."""
    chunks = list(chunks)
    offload = offload or Offload()

    def taken(vector: torch.Tensor) -> torch.Tensor:
        total = torch.zeros_like(vector)
        for inputs, targets, weight in chunks:
            # Attention by its plain formula: the fused kernels have no double backward.
            with sdpa_kernel(SDPBackend.MATH), offload.saving(vector.device):
                loss = loss_of(inputs, targets) * weight
                gradient = _flat(torch.autograd.grad(loss, params, create_graph=True))
                parts = torch.autograd.grad(gradient @ vector.to(gradient.dtype), params)
            total += _flat(parts).double()
        return total

    def product(vector: torch.Tensor) -> torch.Tensor:
        try:
            return taken(vector)
        except torch.OutOfMemoryError as error:
            if offload.on is not None:  # already in host memory, or told to stay put
                raise
            message = str(error).splitlines()[0]
        # Out of the handler, whose traceback held the failed product's tensors.
        offload.give_up_device(vector.device, message)
        return taken(vector)

    return product


def gradient(loss_of: Callable, params: list, chunks) -> torch.Tensor:
    """sum_c weight_c grad L_c, in float64."""
    total = None
    for inputs, targets, weight in chunks:
        part = _flat(torch.autograd.grad(loss_of(inputs, targets) * weight, params)).double()
        total = part if total is None else total + part
    return total


def batch_sharpness(
    loss_of: Callable, params: list, shards, offload: Offload | None = None
) -> float:
    """g^T H_B g / ||g||^2 of one minibatch B given as its shards (inputs, targets, weight): the
    curvature of the minibatch's loss along its own gradient (Andreyev & Beneventano 2024)."""
    shards = list(shards)
    direction = gradient(loss_of, params, shards)
    curved = hessian_product(loss_of, params, shards, offload)(direction)
    return float(direction @ curved / (direction @ direction))


def adam_preconditioner(optimizer, name: str, state, params: list) -> torch.Tensor | None:
    """P = sqrt(v_hat) + eps per parameter (float64, flat), Adam's preconditioner from its
    stored second moments (v_hat = v / (1 - beta2^t)); None before its first step."""
    load_state_vector(optimizer, name, state)
    group = optimizer.param_groups[0]
    beta2, eps = group["betas"][1], group["eps"]
    parts = []
    for param in params:
        held = optimizer.state.get(param, {})
        step = float(held.get("step", 0))
        if step == 0:
            return None
        moment = held["exp_avg_sq"].double() / (1 - beta2**step)
        parts.append(moment.sqrt().reshape(-1) + eps)
    return torch.cat(parts)


def preconditioned(product: Product, preconditioner: torch.Tensor) -> Product:
    """v -> P^-1/2 H P^-1/2 v: symmetric, with the eigenvalues of P^-1 H."""
    scale = preconditioner.rsqrt()
    return lambda vector: scale * product(scale * vector)


def stability_threshold(run: dict, lr: float, optimizer) -> float:
    """The sharpness above which the optimizer's full-batch dynamics on a quadratic diverge:
    2/lr (gradient descent); 2(1 + beta)/lr (heavy-ball momentum beta), 2(1 + beta)/((1 + 2 beta)
    lr) with Nesterov's; for Adam, of the preconditioned sharpness, 2(1 + beta1)/((1 - beta1) lr)
    (Cohen et al. 2021 and 2022). NaN for any other optimizer."""
    name = run["optimizer"]
    if name == "sgd":
        return 2 / lr
    if name == "momentum":
        beta = run["momentum"]
        return 2 * (1 + beta) / ((1 + 2 * beta) * lr if run.get("nesterov") else lr)
    if name in ("adam", "adamw"):
        beta1 = optimizer.param_groups[0]["betas"][0]
        return 2 * (1 + beta1) / ((1 - beta1) * lr)
    return math.nan
