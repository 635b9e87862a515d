"""The same path measured against other endpoints than w* = w_T: is the shape of gamma and eta*
the path's, or made by the choice of w*?

    nwt endpoints results/runs/base/trajectory.h5 --out results/runs/base/endpoints.parquet \
        --progress 0.5 0.75 --continue 0.25

With w* = w_T, ||w_t - w*|| goes to 0 at the end by construction, and so does eta*_t =
gamma_t ||w_t - w*|| / ||G_t||: the decay at the end of the derived schedule may be the
endpoint's. Two other endpoints:

- `progress=p`: the last checkpoint at or before p of training, the path cut there (the checkpoints
  before it measured against it);
- `continued`: the end of a continuation of the run, training on from w_T for `continue` x T more
  steps at its last learning rate, with its optimizer state, as training would have gone on (the
  next epochs' minibatches); every checkpoint before w_T measured against it.

endpoints.parquet has the geometry table's columns for the train batch and the sampled minibatches,
plus `endpoint` (its name) and `endpoint_step` (its step; T + the continuation's steps for
`continued`), so progress towards an endpoint is step / endpoint_step.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

from nowrongturns.config.factories import require_trusted
from nowrongturns.files import written
from nowrongturns.measure.stage import measure
from nowrongturns.models import build_model, resolve_device
from nowrongturns.optim.optimizers import build_optimizer
from nowrongturns.optim.state import load_state_vector
from nowrongturns.precision import apply_precision
from nowrongturns.step import clip_gradients, forward_backward, minibatches
from nowrongturns.tasks.load import load_task
from nowrongturns.trajectory.reader import TrajectoryReader
from nowrongturns.trajectory.state import flat_parameters, load_flat, set_rng_states

CONTINUED = "continued"


def cut_endpoints(traj: TrajectoryReader, progress: list[float]) -> list[tuple[str, int]]:
    """(name, checkpoint index) of the last checkpoint at or before each fraction of training."""
    endpoints = []
    for fraction in progress:
        if not 0 < fraction < 1:
            raise ValueError(
                f"measure.endpoints.progress: {fraction} is not a fraction of training in (0, 1)"
            )
        index = int(np.searchsorted(traj.checkpoint_steps, fraction * traj.total_steps, "right"))
        if index < 2:
            raise ValueError(
                f"{traj.path}: no checkpoint before the one at {fraction} of training to measure "
                "against it (measure.endpoints.progress)"
            )
        endpoints.append((f"progress={fraction:g}", index - 1))
    return endpoints


def continue_training(
    trajectory: str, share: float, device: str = "cpu", trusted=()
) -> tuple[np.ndarray, int]:
    """(w after training on from w_T for round(share x T) steps at the last lr, that step).
    The run's own step (nowrongturns.step), optimizer state and RNG state as stored at w_T; the
    minibatches are those of the epochs that would have followed. In-memory tasks."""
    device = resolve_device(device)
    with TrajectoryReader(trajectory) as traj:
        run, total = traj.config, traj.total_steps
        require_trusted(run, trusted, trajectory)
        task = load_task(run).to(device)
        model = build_model(run, task).to(device).train()
        load_flat(model, traj.weights(-1), traj.buffers(-1))
        optimizer = build_optimizer(run, model)
        load_state_vector(optimizer, run["optimizer"], traj.optimizer_state(-1))
        set_rng_states(traj.rng_states(-1), device)
        lr, precision = float(traj.steps("lr")[-1]), traj.precision
    apply_precision(precision)
    extra = max(1, round(share * total))
    params = list(model.parameters())
    for step, indices in minibatches(
        run["seed"], task.train_size, run["batch_size"], total, total + extra
    ):
        forward_backward(model, optimizer, task, indices, lr, step, precision)
        clip_gradients(params, run["clip_grad_norm"])
        optimizer.step()
    return flat_parameters(model).detach().cpu().numpy(), total + extra


def measure_endpoints(
    trajectory: str,
    out: str,
    run_name: str,
    progress: list[float] = (),
    continued: float = 0.0,
    samples: int = 8,
    device: str = "auto",
    **options,
) -> pd.DataFrame:
    """endpoints.parquet of a trajectory (module docstring); `options` go to `measure`."""
    with TrajectoryReader(trajectory) as traj:
        endpoints = [
            (name, (traj.weights(index), int(traj.checkpoint_steps[index])))
            for name, index in cut_endpoints(traj, list(progress))
        ]
    if continued:
        trusted = options.get("trusted", ())
        endpoints.append((CONTINUED, continue_training(trajectory, continued, device, trusted)))
    if not endpoints:
        raise ValueError(
            f"{trajectory}: no endpoint to measure against (measure.endpoints: progress is empty "
            "and continue is 0)"
        )
    tables = []
    with tempfile.TemporaryDirectory() as folder:
        for name, endpoint in endpoints:
            table = measure(
                trajectory,
                Path(folder) / "endpoint.parquet",
                run_name,
                samples=samples,
                full_batch=False,
                random_labels=False,
                update=False,
                device=device,
                endpoint=endpoint,
                **options,
            )
            tables.append(table.assign(endpoint=name, endpoint_step=endpoint[1]))
    result = pd.concat(tables, ignore_index=True)
    with written(out) as tmp:
        result.to_parquet(tmp, index=False)
    return result
