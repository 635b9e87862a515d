"""The closed loop: a run next to its retrainings on the derived schedule and on a cosine baseline.

    nwt closed-loop results/runs/{base,base--derived,base--cosine}/trajectory.h5 \
        --summary results/runs/base/closed_loop.csv \
        --curves results/runs/base/closed_loop_curves.csv

All three runs have the same model, data order and step budget; only the learning rates differ
(the run's own schedule; `schedule: file` on the fitted eta*; warm-up + cosine at the same peak).
The summary has one row per run: its status, peak lr, final training loss (mean over the last
`tail` of steps, as single minibatch losses are noisy) and the validation loss and accuracy at the
end. The curves have, per checkpoint of each run, the lr, the mean training loss since the previous
checkpoint and the distance to that run's own final point, ||w_t - w_T||.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from nowrongturns.files import written
from nowrongturns.trajectory.reader import TrajectoryReader

TAIL = 0.05


def run_curves(trajectory: str, name: str) -> tuple[dict, pd.DataFrame]:
    with TrajectoryReader(trajectory, require_complete=False) as traj:
        status, attrs = str(traj.file.attrs["status"]), dict(traj.file.attrs)
        lrs, losses = traj.steps("lr"), traj.steps("loss")
        steps = traj.checkpoint_steps
        final = traj.weights(-1).astype(np.float64)
        dist = [np.linalg.norm(traj.weights(i) - final) for i in range(len(steps))]
    tail = losses[int(len(losses) * (1 - TAIL)) :]
    summary = {
        "run": name,
        "status": status,
        "peak_lr": float(lrs.max()),
        "final_train_loss": float(tail.mean()) if status == "complete" else np.nan,
        "final_val_loss": float(attrs.get("final_val_loss", np.nan)),
        "final_val_accuracy": float(attrs.get("final_val_accuracy", np.nan)),
    }
    bounds = np.append(steps, len(losses))  # the loss of steps [t_k, t_k+1) per checkpoint k
    mean_loss = [losses[a:b].mean() if b > a else np.nan for a, b in zip(bounds[:-1], bounds[1:])]
    curves = pd.DataFrame(
        {
            "run": name,
            "step": steps,
            "progress": steps / max(steps[-1], 1),
            "lr": np.append(lrs, np.nan)[steps],
            "train_loss": mean_loss,
            "dist_to_final": dist,
        }
    )
    return summary, curves


def compare(trajectories: list[str], out_summary: str, out_curves: str):
    """Each run named by its trajectory's directory, as the workflow lays them out."""
    parts = [run_curves(path, Path(path).parent.name) for path in trajectories]
    summary = pd.DataFrame([summary for summary, _ in parts])
    curves = pd.concat([curve for _, curve in parts], ignore_index=True)
    for path, table in ((out_summary, summary), (out_curves, curves)):
        with written(path) as tmp:
            table.to_csv(tmp, index=False)
    return summary, curves
