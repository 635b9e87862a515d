"""Dense mode: every segment replays to the next checkpoint bit for bit, however the segments are
cut into jobs, and the per-step geometry obeys the one-step identity of SGD exactly."""

import copy

import h5py
import numpy as np
import pandas as pd
import pytest
from helpers.runs import TINY_WORKFLOW_CONFIG
from helpers.workflow import Workflow

from nowrongturns.replay.segments import replay_jobs, segment_steps
from nowrongturns.replay.stage import TOLERANCE, gather, replay_segments
from nowrongturns.trajectory.format import TrajectoryError

# The tiny run's segments: checkpoints 0, 1, 2, 10, 20, 30, 40 and 44.
TINY_SEGMENTS = [[0, 1], [1, 2], [2, 10], [10, 20], [20, 30], [30, 40], [40, 44]]


def _replay_all(trajectory, folder, job_steps=1):
    parts = []
    for first, last in replay_jobs(segment_steps(trajectory), job_steps):
        parts.append(folder / f"{first}-{last}.parquet")
        replay_segments(trajectory, first, last, parts[-1], "tiny", device="cpu")  # raises if off
    return gather(parts, folder / "dense.parquet")


def test_segments_cut_into_jobs_of_at_least_job_steps(trained):
    _, trajectory, _ = trained()
    segments = segment_steps(trajectory)
    assert segments == TINY_SEGMENTS
    assert replay_jobs(segments, 1) == [[k, k] for k in range(7)]
    assert replay_jobs(segments, 10) == [[0, 2], [3, 3], [4, 4], [5, 5], [6, 6]]
    assert replay_jobs(segments, 25) == [[0, 4], [5, 6]]  # the last job holds what is left
    assert replay_jobs(segments, 1000) == [[0, 6]]
    with pytest.raises(ValueError, match="must be at least 1, not 0"):
        replay_jobs(segments, 0)


@pytest.mark.parametrize(("optimizer", "job_steps"), [("sgd", 1), ("sgd", 25), ("adam", 1000)])
def test_every_step_replayed_once(trained, tmp_path, optimizer, job_steps):
    _, trajectory, _ = trained(optimizer=optimizer)
    dense = _replay_all(trajectory, tmp_path, job_steps)
    with h5py.File(trajectory) as f:
        assert dense["step"].tolist() == list(range(len(f["steps/loss"])))
        assert np.array_equal(dense["loss"].to_numpy(np.float32), f["steps/loss"][:])
        assert np.array_equal(dense["lr"], f["steps/lr"][:])


def test_one_job_gives_what_one_job_per_segment_gives(trained, tmp_path):
    _, trajectory, _ = trained()
    (tmp_path / "each").mkdir(), (tmp_path / "one").mkdir()
    each = _replay_all(trajectory, tmp_path / "each", job_steps=1)
    one = _replay_all(trajectory, tmp_path / "one", job_steps=1000)
    pd.testing.assert_frame_equal(each, one, check_exact=True)


def test_one_step_identity_of_sgd(trained, tmp_path):
    """||w_{t+1} - w*||^2 = ||w_t - w*||^2 (1 - 2 lr RSI + lr^2 EB^2) at every step."""
    _, trajectory, _ = trained()  # plain SGD, no weight decay
    dense = _replay_all(trajectory, tmp_path)
    dist_squared = dense["dist"].to_numpy() ** 2
    lr, rsi, eb = (dense[c].to_numpy() for c in ("lr", "rsi", "eb"))
    predicted = dist_squared * (1 - 2 * lr * rsi + lr**2 * eb**2)
    np.testing.assert_allclose(predicted[:-1], dist_squared[1:], rtol=1e-5)
    assert abs(predicted[-1]) <= 1e-5 * dist_squared[-1]  # w_T is w* itself


@pytest.mark.parametrize(("first", "last"), [(3, 3), (0, 6)])
def test_replay_that_misses_a_checkpoint_fails(trained, tmp_path, first, last):
    _, trajectory, _ = trained()
    tampered = tmp_path / "tampered.h5"
    tampered.write_bytes(trajectory.read_bytes())
    with h5py.File(tampered, "a") as f:
        f["checkpoints/weights"][4, 0] += 1e-3  # checkpoint 4, the end of segment 3
    out = tmp_path / f"{first}-{last}.parquet"
    with pytest.raises(TrajectoryError, match="segment 3 does not reach checkpoint 4"):
        replay_segments(tampered, first, last, out, "tiny", device="cpu")
    assert not out.exists()


def test_replay_of_segments_that_do_not_exist_fails(trained, tmp_path):
    _, trajectory, _ = trained()
    with pytest.raises(ValueError, match="no segments 5 to 7; it has 7"):
        replay_segments(trajectory, 5, 7, tmp_path / "5-7.parquet", "tiny", device="cpu")


@pytest.mark.slow
def test_workflow_replays_jobs_of_consecutive_segments(tmp_path):
    config = copy.deepcopy(TINY_WORKFLOW_CONFIG)
    config["measure"] = {**config["measure"], "dense": True, "dense_job_steps": 10}
    config["ablations"], config["runs"] = {}, {}
    # The closed loop's retrainings and the interpolation replay nothing: left out, for time.
    config["schedule"] = {**config["schedule"], "retrain": False}
    config["analyses"] = {"interpolation": False}
    flow = Workflow(tmp_path, config)
    flow.snakemake()
    dense = pd.read_parquet(tmp_path / "results/runs/base/dense.parquet")
    assert dense["step"].tolist() == list(range(44))  # 1437 // 32 steps
    replays = sorted(path.stem for path in (tmp_path / "results/logs/replay/base").glob("*.log"))
    assert replays == ["0-2", "3-3", "4-4", "5-5", "6-6"]  # at least 10 steps a job
    assert (tmp_path / "results/figures/base/dense.png").stat().st_size > 0


def test_the_tolerance_path_accepts_rounding_and_fails_a_tampered_checkpoint(trained, tmp_path):
    """A trajectory of 2 DDP shards (world_size 2) replays within TOLERANCE, not bit for bit, as
    on a GPU: an MLP, which has no BatchNorm, so its shards' mean gradient is the minibatch's up
    to rounding. A checkpoint moved by 1e-9 of its norm still replays; one moved by 1e-3 fails,
    naming the segment and its relative error."""
    _, trajectory, _ = trained(model="mlp")
    sharded = tmp_path / "sharded.h5"
    sharded.write_bytes(trajectory.read_bytes())
    with h5py.File(sharded, "a") as f:
        f.attrs["world_size"] = 2
        norm = float(np.linalg.norm(f["checkpoints/weights"][4].astype(np.float64)))
    table = replay_segments(sharded, 3, 3, tmp_path / "3-3.parquet", "tiny", device="cpu")
    assert max(table.attrs["end_errors"]) <= TOLERANCE
    for moved, passes in ((1e-9 * norm, True), (1e-3 * norm, False)):
        tampered = tmp_path / f"tampered-{moved:.0e}.h5"
        tampered.write_bytes(sharded.read_bytes())
        with h5py.File(tampered, "a") as f:
            f["checkpoints/weights"][4, 0] += moved  # checkpoint 4, the end of segment 3
        out = tmp_path / f"tampered-{moved:.0e}.parquet"
        if passes:
            replay_segments(tampered, 3, 3, out, "tiny", device="cpu")
            continue
        with pytest.raises(TrajectoryError, match=r"segment 3 does not reach .*relative error"):
            replay_segments(tampered, 3, 3, out, "tiny", device="cpu")
        assert not out.exists()
