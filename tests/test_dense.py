"""Dense mode: every segment replays to the next checkpoint bit for bit, and the per-step
geometry obeys the one-step identity of SGD exactly."""

import copy

import h5py
import numpy as np
import pandas as pd
import pytest
from conftest import TINY_WORKFLOW_CONFIG, Workflow

from nowrongturns.dense import gather, replay_segment, segment_steps
from nowrongturns.trajectory import TrajectoryError


def _replay_all(trajectory, folder):
    parts = []
    for segment in range(len(segment_steps(trajectory))):
        parts.append(folder / f"{segment}.parquet")
        replay_segment(trajectory, segment, parts[-1], "tiny", device="cpu")  # raises if off
    return gather(parts, folder / "dense.parquet")


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_every_step_replayed_once(trained, tmp_path, optimizer):
    _, trajectory, _ = trained(optimizer=optimizer)
    dense = _replay_all(trajectory, tmp_path)
    with h5py.File(trajectory) as f:
        assert dense["step"].tolist() == list(range(len(f["steps/loss"])))
        assert np.array_equal(dense["loss"].to_numpy(np.float32), f["steps/loss"][:])
        assert np.array_equal(dense["lr"], f["steps/lr"][:])


def test_one_step_identity_of_sgd(trained, tmp_path):
    """||w_{t+1} - w*||^2 = ||w_t - w*||^2 (1 - 2 lr RSI + lr^2 EB^2) at every step."""
    _, trajectory, _ = trained()  # plain SGD, no weight decay
    dense = _replay_all(trajectory, tmp_path)
    dist_squared = dense["dist"].to_numpy() ** 2
    lr, rsi, eb = (dense[c].to_numpy() for c in ("lr", "rsi", "eb"))
    predicted = dist_squared * (1 - 2 * lr * rsi + lr**2 * eb**2)
    np.testing.assert_allclose(predicted[:-1], dist_squared[1:], rtol=1e-5)
    assert abs(predicted[-1]) <= 1e-5 * dist_squared[-1]  # w_T is w* itself


def test_replay_that_misses_the_next_checkpoint_fails(trained, tmp_path):
    _, trajectory, _ = trained()
    tampered = tmp_path / "tampered.h5"
    tampered.write_bytes(trajectory.read_bytes())
    with h5py.File(tampered, "a") as f:
        f["checkpoints/weights"][4, 0] += 1e-3  # checkpoint 4, the end of segment 3
    with pytest.raises(TrajectoryError, match="segment 3 does not reach checkpoint 4"):
        replay_segment(tampered, 3, tmp_path / "3.parquet", "tiny", device="cpu")
    assert not (tmp_path / "3.parquet").exists()


def test_workflow_replays_one_job_per_segment(tmp_path):
    config = copy.deepcopy(TINY_WORKFLOW_CONFIG)
    config["measure"] = {**config["measure"], "dense": True}
    config["ablations"], config["runs"] = {}, {}
    flow = Workflow(tmp_path, config)
    flow.snakemake()
    dense = pd.read_parquet(tmp_path / "results/runs/base/dense.parquet")
    assert dense["step"].tolist() == list(range(44))  # 1437 // 32 steps
    replays = sorted((tmp_path / "results/logs/replay/base").glob("*.log"))
    assert len(replays) == 7  # checkpoints 0, 1, 2, 10, 20, 30, 40, 44
    assert (tmp_path / "results/figures/base/dense.png").stat().st_size > 0
