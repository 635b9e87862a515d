"""How the paper's reference code obtains its data, re-implemented for the speed comparison.

    from reference_two_pass import two_pass_checkpoints, two_pass_dense
    table = two_pass_checkpoints(run, samples=8)      # what `nwt train` + `nwt measure` give
    table = two_pass_dense(run)                       # what `nwt train` + `nwt replay` give

The reference code does not store a trajectory. It trains twice, in a row: pass 1 trains the run
to learn w* = w_T; pass 2 trains again from the same seed and, at the logged steps, takes the
gradients it measures and logs RSI, EB and gamma of each against w*. Every logged value reaches the
host as it is computed (`.item()` on each loss, norm and dot product, as logging each value to
wandb does), in float32, the dtype of the model.

To be compared with the package, it uses the package's own pieces (task, model, optimizer, schedule,
minibatch order, loss and gradient) and measures the same things: the logged steps are the
checkpoint steps but the last (`checkpoint_steps`, as the measure stage reads them from the
trajectory), the minibatches are the step's train batch plus `samples` minibatches drawn from
`seeded_generator(seed, SAMPLED, step)`, as `nowrongturns.measure.gradients.gradients_at` draws
them. The train batch's gradient is the one the training step uses anyway, so it costs pass 2
nothing extra; the sampled ones are computed before it, at the same weights. Nothing here is slower
than it needs to be: no per-step logging in pass 1, no file written, w* kept in memory."""

from __future__ import annotations

import pandas as pd
import torch

from nowrongturns.models import build_model, resolve_device
from nowrongturns.optim.learning_rates import lr_schedule
from nowrongturns.optim.optimizers import build_optimizer
from nowrongturns.step import SAMPLED, forward_backward, minibatches, seeded_generator
from nowrongturns.tasks.load import load_task
from nowrongturns.train.stage import checkpoint_steps, evaluate
from nowrongturns.trajectory.state import flat_parameters, rng_states, set_rng_states


def _start(run: dict, device: torch.device):
    """The state a training run starts from, built exactly as the train stage builds it."""
    torch.use_deterministic_algorithms(True)  # pass 2 must retrace pass 1
    task = load_task(run).to(device)
    torch.manual_seed(run["seed"])
    model = build_model(run, task).to(device).train()
    optimizer = build_optimizer(run, model)
    total_steps = run["epochs"] * (task.train_size // run["batch_size"])
    return task, model, optimizer, total_steps, lr_schedule(run, total_steps)


def first_pass(run: dict, device: torch.device) -> torch.Tensor:
    """Pass 1: train the run, end with its validation (as the train stage does); w* = w_T."""
    task, model, optimizer, total_steps, lrs = _start(run, device)
    steps = minibatches(run["seed"], task.train_size, run["batch_size"], 0, total_steps)
    for step, indices in steps:
        forward_backward(model, optimizer, task, indices, lrs[step], step)
        optimizer.step()
    evaluate(model, task)
    return flat_parameters(model).clone()


def logged_values(loss, gradient, weights, to_final, dist: float, weight_decay: float) -> dict:
    """One gradient's row, the reference way: each value to the host as soon as it is computed."""
    row = {"loss": loss.item(), "dist": dist}
    directions = [("", gradient)]
    if weight_decay:
        directions.append(("_wd", gradient + weight_decay * weights))
    for suffix, direction in directions:
        grad_norm = direction.norm().item()
        dot = (direction @ to_final).item()
        row[f"grad_norm{suffix}"], row[f"dot{suffix}"] = grad_norm, dot
        row[f"rsi{suffix}"] = dot / dist**2
        row[f"eb{suffix}"] = grad_norm / dist
        row[f"gamma{suffix}"] = dot / (grad_norm * dist)
    return row


def _gradient(params: list) -> torch.Tensor:
    return torch.cat([p.grad.reshape(-1) for p in params])


def _check_same_path(model, w_star: torch.Tensor) -> None:
    if not torch.equal(flat_parameters(model), w_star):
        raise RuntimeError("pass 2 did not retrace pass 1: its w_T differs from w*")


def two_pass_checkpoints(run: dict, samples: int, device: str = "cpu") -> pd.DataFrame:
    """Per logged step: the train batch's and `samples` sampled minibatches' RSI, EB and gamma
    against w*, the reference way (two training passes, one host sync per logged value)."""
    device = resolve_device(device)
    w_star = first_pass(run, device)
    task, model, optimizer, total_steps, lrs = _start(run, device)
    params = list(model.parameters())
    logged = set(checkpoint_steps(total_steps, **run["checkpoint"])) - {total_steps}
    weight_decay = run["weight_decay"]
    rows = []
    steps = minibatches(run["seed"], task.train_size, run["batch_size"], 0, total_steps)
    for step, indices in steps:
        if step in logged:
            weights = flat_parameters(model)
            to_final = weights - w_star
            dist = to_final.norm().item()
            # The extra forward passes must not move training's random stream (dropout).
            training_rng = rng_states(device)
            sampler = seeded_generator(run["seed"], SAMPLED, step)
            for sample in range(samples):
                sampled = torch.randperm(task.train_size, generator=sampler)[: len(indices)]
                optimizer.zero_grad()
                inputs, targets = task.batch(sampled)
                loss = task.loss(model(inputs), targets)
                loss.backward()
                values = logged_values(
                    loss, _gradient(params), weights, to_final, dist, weight_decay
                )
                rows.append({"step": step, "source": "sampled", "sample": sample, **values})
            set_rng_states(training_rng, device)
        loss = forward_backward(model, optimizer, task, indices, lrs[step], step)
        if step in logged:
            values = logged_values(loss, _gradient(params), weights, to_final, dist, weight_decay)
            rows.append({"step": step, "source": "train_batch", "sample": 0, **values})
        optimizer.step()
    _check_same_path(model, w_star)
    return pd.DataFrame(rows)


def two_pass_dense(run: dict, device: str = "cpu") -> pd.DataFrame:
    """At every step, the training gradient's RSI, EB and gamma against w*, the reference way."""
    device = resolve_device(device)
    w_star = first_pass(run, device)
    task, model, optimizer, total_steps, lrs = _start(run, device)
    params = list(model.parameters())
    weight_decay = run["weight_decay"]
    rows = []
    steps = minibatches(run["seed"], task.train_size, run["batch_size"], 0, total_steps)
    for step, indices in steps:
        weights = flat_parameters(model)
        to_final = weights - w_star
        dist = to_final.norm().item()
        loss = forward_backward(model, optimizer, task, indices, lrs[step], step)
        values = logged_values(loss, _gradient(params), weights, to_final, dist, weight_decay)
        rows.append({"step": step, "lr": lrs[step], **values})
        optimizer.step()
    _check_same_path(model, w_star)
    return pd.DataFrame(rows)
