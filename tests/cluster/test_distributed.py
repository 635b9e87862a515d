"""DDP on the CPU (docs/cluster.md#inside-a-gpu-job): torchrun, gloo, 2 processes, a CNN with
BatchNorm, plain SGD.

The trajectory is measured and replayed in one process, each minibatch as the two shards the two
processes computed; a rank killed with SIGKILL fails the job, and the rerun resumes to the very
trajectory of a run that was never killed.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import h5py
import pytest
from helpers.compare_results import assert_same_contents, hdf5_contents
from helpers.runs import assert_rows_are_the_steps_taken, kill_hooks, tiny_run

from nowrongturns.measure.stage import measure
from nowrongturns.replay.segments import replay_jobs, segment_steps
from nowrongturns.replay.stage import replay_segments
from nowrongturns.trajectory.reader import TrajectoryReader

# 44 steps of 32 digits (16 a process), checkpoints 0-5, then every 10th.
DDP_RUN = tiny_run(optimizer="sgd", checkpoint={"dense_first": 6, "every": 10})


def torchrun(run: dict, out: Path, env: dict | None = None, processes: int = 2):
    """`nwt train` as the train rule launches it for train.processes: 2."""
    command = [
        Path(sys.executable).parent / "torchrun",
        "--standalone",
        "--nnodes",
        "1",
        "--nproc-per-node",
        str(processes),
        "-m",
        "nowrongturns",
        "--",
        "train",
        "--run",
        json.dumps(run),
        "--out",
        out,
        "--device",
        "cpu",
        "--threads",
        "1",
    ]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def ddp_trajectory(tmp_path_factory) -> Path:
    trajectory = tmp_path_factory.mktemp("ddp") / "trajectory.h5"
    result = torchrun(DDP_RUN, trajectory)
    assert result.returncode == 0, result.stderr
    return trajectory


def test_ddp_trajectory_records_its_world_size(ddp_trajectory):
    with TrajectoryReader(ddp_trajectory) as traj:
        assert (traj.world_size, traj.precision) == (2, "fp32")
        assert traj.total_steps == 44


def test_ddp_trajectory_replays_in_one_process(ddp_trajectory, tmp_path):
    """Every segment ends on its stored checkpoint to 1e-5 relative (replay_segments raises
    otherwise), over all 44 steps."""
    for first, last in replay_jobs(segment_steps(ddp_trajectory), 1):
        replay_segments(
            ddp_trajectory, first, last, tmp_path / f"{first}-{last}.parquet", "ddp", device="cpu"
        )


def test_ddp_train_batch_gradient_is_the_step_taken(ddp_trajectory, tmp_path):
    table = measure(
        ddp_trajectory,
        tmp_path / "geometry.parquet",
        "ddp",
        samples=1,
        full_batch=False,
        random_labels=True,
        device="cpu",
    )
    assert_rows_are_the_steps_taken(table, ddp_trajectory, "train_batch")


def test_ddp_is_not_one_process(ddp_trajectory, tmp_path):
    """The shards' own BatchNorm statistics make another path than one process's."""
    from nowrongturns.train.stage import train

    single = tmp_path / "single.h5"
    train(DDP_RUN, single, device="cpu")
    with h5py.File(single) as one, h5py.File(ddp_trajectory) as two:
        assert one["checkpoints/weights"][0].tolist() == two["checkpoints/weights"][0].tolist()
        assert one["checkpoints/weights"][1].tolist() != two["checkpoints/weights"][1].tolist()


def test_killed_rank_fails_the_job_and_the_rerun_resumes_to_the_same_trajectory(
    ddp_trajectory, tmp_path
):
    hooks = kill_hooks(tmp_path / "hooks")
    killed = tmp_path / "trajectory.h5"
    # Rank 1 dies inside its 25th minibatch (step 24, after checkpoint 20).
    env = {
        **os.environ,
        "PYTHONPATH": str(hooks),
        "NWT_TEST_KILL_AT_BATCH": "25",
        "NWT_TEST_KILL_RANK": "1",
    }
    result = torchrun(DDP_RUN, killed, env)
    assert result.returncode != 0
    assert not killed.exists() and killed.with_name("trajectory.h5.partial").exists()
    resumed = torchrun(DDP_RUN, killed)
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming from the checkpoint at step 20" in resumed.stderr
    assert_same_contents(hdf5_contents(killed), hdf5_contents(ddp_trajectory))
