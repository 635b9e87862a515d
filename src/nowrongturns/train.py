"""The train stage: one run config in, one trajectory file out.

    nwt train --run '{"task": "digits", "model": "cnn", ...}' --out results/runs/base/trajectory.h5

Minibatches are drawn without replacement within an epoch (the last incomplete batch is dropped,
so every step has `batch_size` examples) in an order seeded by (seed, epoch); the indices of every
step are stored, so later stages rebuild the exact minibatch the optimizer saw.
"""

from __future__ import annotations

import os
import sys

import numpy as np
import torch
from tqdm import tqdm

from .data import epoch_order, load_task
from .models import build_model, resolve_device
from .trajectory import TrajectoryWriter, flat_buffers, flat_parameters

# Per-parameter optimizer state stored in /checkpoints/optimizer, in this order.
OPTIMIZER_STATE_KEYS = {"sgd": (), "momentum": ("momentum_buffer",)}


def build_optimizer(run: dict, model: torch.nn.Module) -> torch.optim.Optimizer:
    momentum = run["momentum"] if run["optimizer"] == "momentum" else 0.0
    if run["optimizer"] not in OPTIMIZER_STATE_KEYS:
        raise ValueError(f"optimizer {run['optimizer']!r} is unknown")
    return torch.optim.SGD(
        model.parameters(), lr=run["lr"], momentum=momentum, weight_decay=run["weight_decay"]
    )


def optimizer_state_vector(optimizer: torch.optim.Optimizer, keys: tuple[str, ...]) -> torch.Tensor:
    """Flat optimizer state; a buffer not created yet (before the first step) is zeros."""
    params = [p for group in optimizer.param_groups for p in group["params"]]
    parts = [
        optimizer.state[p].get(key, torch.zeros_like(p)).reshape(-1) for key in keys for p in params
    ]
    return torch.cat(parts) if parts else torch.zeros(0)


def checkpoint_steps(total_steps: int, dense_first: int, every: int) -> list[int]:
    """Steps 0..dense_first-1, then every `every`-th step, then always the last step T."""
    dense = range(min(dense_first, total_steps))
    sparse = (s for s in range(0, total_steps, every) if s >= dense_first)
    return sorted({*dense, *sparse, total_steps})


def learning_rate(run: dict, step: int) -> float:
    if run["schedule"] == "constant":
        return run["lr"]
    raise ValueError(f"schedule {run['schedule']!r} is unknown")


def rng_states(device: torch.device) -> dict[str, np.ndarray]:
    states = {"cpu": torch.get_rng_state().numpy()}
    if device.type == "cuda":
        states["cuda"] = torch.cuda.get_rng_state(device).numpy()
    return states


def train(run: dict, out_path: str, device: str = "auto", run_name: str = "") -> None:
    device = resolve_device(device)
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # for deterministic cuBLAS
    torch.use_deterministic_algorithms(True)
    task = load_task(run).to(device)
    torch.manual_seed(run["seed"])
    model = build_model(run, task).to(device).train()
    optimizer = build_optimizer(run, model)
    state_keys = OPTIMIZER_STATE_KEYS[run["optimizer"]]
    params = list(model.parameters())

    batch_size, train_size = run["batch_size"], task.train_size
    steps_per_epoch = train_size // batch_size
    if steps_per_epoch == 0:
        raise ValueError(f"batch_size {batch_size} exceeds the {train_size} training examples")
    total_steps = run["epochs"] * steps_per_epoch
    saved_steps = checkpoint_steps(total_steps, **run["checkpoint"])

    writer = TrajectoryWriter(
        out_path,
        run,
        model,
        optimizer_state_vector(optimizer, state_keys).numel(),
        {k: v.size for k, v in rng_states(device).items()},
        batch_size,
        str(device),
    )
    # Per-step scalars stay on the device and reach the host once per checkpoint.
    losses, grad_norms, update_norms = (torch.zeros(total_steps, device=device) for _ in range(3))
    batches = np.zeros((total_steps, batch_size), dtype=np.int64)
    lrs = np.zeros(total_steps)
    flushed = 0

    def flush(upto: int) -> None:
        nonlocal flushed
        rows = slice(flushed, upto)
        writer.append_steps(
            {
                "step": np.arange(flushed, upto),
                "epoch": np.arange(flushed, upto) // steps_per_epoch,
                "loss": losses[rows].cpu().numpy(),
                "lr": lrs[rows],
                "grad_norm": grad_norms[rows].cpu().numpy(),
                "update_norm": update_norms[rows].cpu().numpy(),
                "batch_indices": batches[rows],
            }
        )
        flushed = upto

    def save_checkpoint(step: int) -> None:
        flush(step)
        writer.append_checkpoint(
            step,
            flat_parameters(model).cpu().numpy(),
            flat_buffers(model).cpu().numpy(),
            optimizer_state_vector(optimizer, state_keys).cpu().numpy(),
            rng_states(device),
        )

    try:
        for step in tqdm(range(total_steps), desc=f"train {run_name}", disable=None):
            if step in saved_steps:
                save_checkpoint(step)
            epoch, position = divmod(step, steps_per_epoch)
            if position == 0:
                order = epoch_order(run["seed"], epoch, train_size)
            indices = order[position * batch_size : (position + 1) * batch_size]
            batches[step] = indices.numpy()
            lrs[step] = learning_rate(run, step)
            for group in optimizer.param_groups:
                group["lr"] = lrs[step]

            inputs, targets = task.batch(indices)
            loss = task.loss(model(inputs), targets)
            optimizer.zero_grad()
            loss.backward()
            with torch.no_grad():
                before = [p.clone() for p in params]
                optimizer.step()
                losses[step] = loss
                grad_norms[step] = _norm([p.grad for p in params])
                update_norms[step] = _norm(torch._foreach_sub(before, params))
        save_checkpoint(total_steps)
        val_loss, val_accuracy = evaluate(model, task)
    except BaseException:
        writer.abandon()
        raise
    writer.finish(final_val_loss=val_loss, final_val_accuracy=val_accuracy)
    print(
        f"{run_name or out_path}: {total_steps} steps, {len(saved_steps)} checkpoints, "
        f"final train loss {losses[-1].item():.4f}, validation accuracy {val_accuracy:.4f}",
        file=sys.stderr,
    )


def _norm(tensors: list[torch.Tensor]) -> torch.Tensor:
    return torch.linalg.vector_norm(torch.stack(torch._foreach_norm(tensors)).double())


@torch.no_grad()
def evaluate(model: torch.nn.Module, task, chunk: int = 1024) -> tuple[float, float]:
    """Validation loss and accuracy (over examples, pixels or tokens), in eval mode."""
    model.eval()
    loss_sum = correct = count = 0.0
    for start in range(0, len(task.validation), chunk):
        indices = torch.arange(start, min(start + chunk, len(task.validation)))
        inputs, targets = task.batch(indices, split="validation")
        logits = model(inputs)
        loss_sum += task.loss(logits, targets).item() * len(indices)
        class_dim = -1 if task.kind == "language" else 1
        correct += (logits.argmax(class_dim) == targets).double().mean().item() * len(indices)
        count += len(indices)
    model.train()
    return loss_sum / count, correct / count
