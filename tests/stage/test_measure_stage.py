"""The measure stage as a whole: noise baselines on the default run, a corrupted checkpoint, and
memory that does not grow with the trajectory."""

import subprocess
import sys

import pytest
from helpers.runs import corrupted_copy, tiny_run

from nowrongturns.train.stage import train


@pytest.mark.slow
def test_default_run_is_far_above_noise(default_run):
    """On the default digits run, the sampled gradients' median z exceeds 3 over the first 90 %
    of training, and shuffled labels give a smaller median gamma than true ones."""
    _, table = default_run
    early = table[table["progress"] <= 0.9]
    median_z = early[early["source"] == "sampled"].groupby("step")["z"].median()
    print(f"median z of sampled rows, first 90 %: min {median_z.min():.1f}")
    assert (median_z > 3).all()
    gammas = table.groupby("source")["gamma"].median()
    assert gammas["random_labels"] < gammas["sampled"]


@pytest.mark.slow
def test_corrupted_checkpoint_fails_the_stage_naming_file_and_checkpoint(trained, tmp_path):
    _, trajectory, _ = trained()
    corrupted = corrupted_copy(trajectory, tmp_path / "trajectory.h5", 5)  # step 30
    out = tmp_path / "geometry.parquet"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "nowrongturns",
            "measure",
            str(corrupted),
            "--out",
            str(out),
            "--samples",
            "1",
            "--device",
            "cpu",
        ],
        capture_output=True,
        text=True,
    )
    assert result.returncode != 0
    assert f"{corrupted}: checkpoint 5 (step 30)" in result.stderr
    assert "Traceback" not in result.stderr
    assert not out.exists()


# The peak resident memory of this process's own address space (VmHWM, in kB): getrusage's
# ru_maxrss outlives exec, so it would count the test process's memory at the fork.
PEAK_MEMORY = """
import re, sys
from pathlib import Path
from nowrongturns.measure.stage import measure
measure(sys.argv[1], sys.argv[2], "r", samples=1, full_batch=False, random_labels=False,
        device="cpu")
print(re.search(r"VmHWM:\\s+(\\d+) kB", Path("/proc/self/status").read_text()).group(1))
"""


@pytest.mark.slow
def test_peak_memory_is_flat_when_the_trajectory_is_four_times_longer(tmp_path):
    """An MLP of 85k parameters checkpointed at every step: 45 checkpoints (15 MB of weights)
    against 177 (60 MB). A stage that held the trajectory would grow by about 45 MB."""
    peaks = {}
    for epochs in (1, 4):
        run = tiny_run(
            model="mlp",
            width=256,
            batch_size=32,
            epochs=epochs,
            optimizer="sgd",
            checkpoint={"dense_first": 1, "every": 1},
        )
        trajectory = tmp_path / f"{epochs}.h5"
        train(run, trajectory, device="cpu")
        result = subprocess.run(
            [sys.executable, "-c", PEAK_MEMORY, trajectory, tmp_path / f"{epochs}.parquet"],
            capture_output=True,
            text=True,
            check=True,
        )
        peaks[epochs] = int(result.stdout.split()[-1])  # KiB
    ratio = peaks[4] / peaks[1]
    print(
        f"peak RSS of the measure stage: {peaks[1] / 1024:.0f} MiB for 1 epoch, "
        f"{peaks[4] / 1024:.0f} MiB for 4: ratio {ratio:.3f}"
    )
    assert ratio < 1.05
