"""Orthogonal components (the reference code's analysis, at every step rather than every 51st):
replaying the training steps from the stored checkpoints (replay/stage.py's Replay), the cosine
between the part of g_t orthogonal to w_t - w* and the part of g_{t+k} orthogonal to w_{t+k} - w*,
and the distance ||w_t - w_{t+k}||, for every step t and lag k with t + k < T. If the gradients'
parts off the direction to w* are noise, their cosines at k > 0 are near 0; if they are a consistent
drift (a curved path), they stay positive over lags at which the weights have moved.

    nwt orthogonal results/runs/base/trajectory.h5 --out results/runs/base/orthogonal.parquet \
        --lags 1 2 5 10 20 50

One job replays the whole path (a lag crosses segments), holding the last max(k) orthogonal
parts and weights (float32, 2 max(k) vectors of the parameter count); each part is computed and
each dot product and norm accumulated in float64. Columns: step (t), progress (t / T), k, cosine,
distance. Cost: one training pass, forward and backward per step, no more.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable

import numpy as np
import pandas as pd
import torch

from nowrongturns.files import written
from nowrongturns.models import resolve_device
from nowrongturns.progress import Progress
from nowrongturns.replay.stage import Replay
from nowrongturns.trajectory.reader import TrajectoryReader
from nowrongturns.trajectory.state import flat_parameters

LAGS = (1, 2, 5, 10, 20, 50)


def orthogonal_part(gradient64: torch.Tensor, to_final64: torch.Tensor) -> torch.Tensor:
    """g - (<g, u> / ||u||^2) u, u = w - w*: the part of g orthogonal to the direction to w*."""
    return gradient64 - (gradient64 @ to_final64) / (to_final64 @ to_final64) * to_final64


def orthogonal(
    trajectory: str,
    out: str,
    run_name: str,
    lags: Iterable[int] = LAGS,
    device: str = "auto",
    data_workers: int = 0,
    trusted: Iterable[str] = (),
) -> pd.DataFrame:
    """The orthogonal-components table of a trajectory, from one replay of all its steps."""
    lags = sorted(set(lags))
    if not lags or lags[0] < 1:
        raise ValueError(f"lags (analyses.orthogonal.lags) must be positive steps, not {lags}")
    device = resolve_device(device)
    with TrajectoryReader(trajectory) as traj:
        replay = Replay(traj, 0, len(traj.checkpoint_steps) - 2, device, data_workers, trusted)
        final64 = torch.from_numpy(traj.weights(-1)).to(device).double()
        # (orthogonal part, its norm, weights) of the last max(k) steps, newest last.
        history = deque(maxlen=lags[-1])
        progress = Progress(f"orthogonal {run_name}", traj.total_steps, "step")
        steps, ks, values = [], [], []
        for step, _, gradient in replay.steps():
            weights = flat_parameters(replay.model)  # a copy: the step changes the model
            weights64 = weights.double()  # once a step, not once a lag
            part = orthogonal_part(gradient.double(), weights64 - final64)
            norm = part.norm()
            for k in lags:
                if k > len(history):
                    break
                earlier, earlier_norm, earlier_weights = history[-k]
                cosine = (earlier.double() @ part) / (earlier_norm * norm)
                distance = (earlier_weights.double() - weights64).norm()
                steps.append(step - k)
                ks.append(k)
                values.append(torch.stack([cosine, distance]))
            history.append((part.float(), norm, weights))
            if progress.advance(step + 1) or step + 1 == replay.end:
                progress.line(step=step)
        progress.close()
        total_steps = traj.total_steps
    found = torch.stack(values).cpu().numpy() if values else np.empty((0, 2))  # one host sync
    steps = np.array(steps, dtype=np.int64)
    table = pd.DataFrame(
        {
            "run": run_name,
            "step": steps,
            "progress": steps / total_steps,
            "k": np.array(ks, dtype=np.int64),
            "cosine": found[:, 0],
            "distance": found[:, 1],
        }
    )
    table = table.sort_values(["step", "k"], ignore_index=True)
    table.attrs["end_errors"] = max(replay.end_errors, default=0.0)
    with written(out) as tmp:
        table.to_parquet(tmp, index=False)
    return table
