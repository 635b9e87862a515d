"""Same config, same bits on CPU: two fresh runs give identical checkpoints and geometry tables."""

import h5py
import numpy as np
import pandas as pd
from helpers.runs import tiny_run

from nowrongturns.measure.stage import measure
from nowrongturns.train.stage import train


def _train_and_measure(folder, run):
    trajectory, geometry = folder / "trajectory.h5", folder / "geometry.parquet"
    train(run, trajectory, device="cpu")
    measure(
        trajectory,
        geometry,
        run_name="r",
        samples=2,
        full_batch=True,
        random_labels=True,
        device="cpu",
    )
    return trajectory, pd.read_parquet(geometry)


def test_two_fresh_runs_are_bit_identical(tmp_path):
    run = tiny_run(optimizer="momentum")
    (tmp_path / "a").mkdir(), (tmp_path / "b").mkdir()
    first, first_table = _train_and_measure(tmp_path / "a", run)
    second, second_table = _train_and_measure(tmp_path / "b", run)
    with h5py.File(first) as a, h5py.File(second) as b:
        for name in ("weights", "buffers", "optimizer", "rng/cpu"):
            assert np.array_equal(a["checkpoints"][name][:], b["checkpoints"][name][:]), name
        for name in ("loss", "grad_norm", "update_norm", "batch_indices"):
            assert np.array_equal(a["steps"][name][:], b["steps"][name][:]), name
    pd.testing.assert_frame_equal(first_table, second_table, check_exact=True)


def test_a_different_seed_gives_a_different_path(tmp_path):
    (tmp_path / "a").mkdir(), (tmp_path / "b").mkdir()
    first, _ = _train_and_measure(tmp_path / "a", tiny_run(seed=0))
    second, _ = _train_and_measure(tmp_path / "b", tiny_run(seed=1))
    with h5py.File(first) as a, h5py.File(second) as b:
        assert not np.array_equal(a["checkpoints/weights"][0], b["checkpoints/weights"][0])
        assert not np.array_equal(a["steps/batch_indices"][:], b["steps/batch_indices"][:])
