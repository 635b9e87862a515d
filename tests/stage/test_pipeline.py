"""Training at scale on the CPU: loader workers that change no bit, bf16 autocast, strict fp32
measurement, and progress lines in a job's log."""

import io
import re

import numpy as np
import pandas as pd
import pytest
import torch
from helpers.compare_results import assert_same_contents, hdf5_contents
from helpers.datasets import write_noise_images
from helpers.runs import tiny_run

from nowrongturns.measure import gradients
from nowrongturns.measure.stage import measure
from nowrongturns.progress import Progress
from nowrongturns.train.stage import train
from nowrongturns.trajectory.reader import TrajectoryReader


@pytest.fixture(scope="module")
def imagenet_dir(tmp_path_factory):
    """A tiny ImageNet in the real ImageFolder layout: 12 training JPEGs, 2 validation."""
    root = tmp_path_factory.mktemp("imagenet")
    rng = np.random.default_rng(0)
    write_noise_images(root / "train", 6, rng)
    write_noise_images(root / "val", 1, rng)
    return root


def imagenet_run(root, **changes) -> dict:
    return tiny_run(
        task="imagenet",
        data_dir=str(root),
        model="cnn",
        width=2,
        depth=1,
        batch_size=4,
        epochs=2,
        augment="standard",
        checkpoint={"dense_first": 2, "every": 2},
        **changes,
    )


def test_loader_workers_change_no_bit(imagenet_dir, tmp_path):
    """0, 1 and 2 loader workers: bit-identical trajectories and geometry tables, with the
    images decoded and random-resized-cropped in the workers."""
    run = imagenet_run(imagenet_dir)
    trajectories, tables = [], []
    for workers in (0, 1, 2):
        trajectory = tmp_path / f"{workers}.h5"
        train(run, trajectory, device="cpu", data_workers=workers)
        trajectories.append(hdf5_contents(trajectory))
        tables.append(
            measure(
                trajectory,
                tmp_path / f"{workers}.parquet",
                "r",
                samples=1,
                full_batch=True,
                random_labels=True,
                device="cpu",
                data_workers=workers,
            )
        )
    for contents, table in zip(trajectories[1:], tables[1:]):
        assert_same_contents(contents, trajectories[0])
        pd.testing.assert_frame_equal(table, tables[0], check_exact=True)


def test_bf16_trains_on_the_cpu_and_is_recorded(tmp_path):
    trajectory = tmp_path / "bf16.h5"
    assert train(tiny_run(), trajectory, device="cpu", precision="bf16") == "complete"
    fp32 = tmp_path / "fp32.h5"
    train(tiny_run(), fp32, device="cpu")
    with TrajectoryReader(trajectory) as bf16, TrajectoryReader(fp32) as strict:
        assert (bf16.precision, strict.precision) == ("bf16", "fp32")
        losses = bf16.steps("loss")
        assert np.isfinite(losses).all() and losses[-1] < losses[0]
        assert not np.array_equal(losses, strict.steps("loss"))  # autocast did compute in bf16
        assert bf16.weights(-1).dtype == np.float32  # the weights stay float32


def test_measure_runs_strict_fp32_with_deterministic_algorithms(trained, tmp_path, monkeypatch):
    """Whatever the process had set: TF32 off for matmuls and cuDNN, deterministic algorithms on,
    while every gradient is taken."""
    _, trajectory, _ = trained()
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    torch.use_deterministic_algorithms(False)
    seen = []
    minibatch = gradients.GradientProbe.minibatch

    def recording(self, *args, **kwargs):
        seen.append(
            (
                torch.backends.cuda.matmul.allow_tf32,
                torch.backends.cudnn.allow_tf32,
                torch.are_deterministic_algorithms_enabled(),
                self.precision,
            )
        )
        return minibatch(self, *args, **kwargs)

    monkeypatch.setattr(gradients.GradientProbe, "minibatch", recording)
    measure(
        trajectory,
        tmp_path / "geometry.parquet",
        "r",
        samples=1,
        full_batch=False,
        random_labels=False,
        device="cpu",
    )
    assert seen and set(seen) == {(False, False, True, "fp32")}


def test_progress_lines_in_a_log_carry_the_time_rate_and_eta():
    stream = io.StringIO()
    progress = Progress(
        "train base", total=100, unit="step", examples_per_unit=32, every=0.0, stream=stream
    )
    assert progress.advance(10)  # a line is due at every step with every=0 (60 s by default)
    progress.line(loss=0.5)
    line = stream.getvalue()
    expected = (
        r"\[\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\] train base: step 10/100, loss 0.5, "
        r"\d+ examples/s, elapsed 0:00:00, ETA \d+:\d\d:\d\d\n$"
    )
    assert re.match(expected, line), line
    quiet = Progress("train base", total=100, unit="step", stream=io.StringIO())
    assert not quiet.advance(10)  # within the minute


@pytest.mark.slow
def test_train_job_through_snakemake_writes_progress_lines_to_its_log(workflow):
    """The tiny run: 8 checkpoints (0, 1, 2, 10, ..., 40, 44), a timestamped line at each."""
    workflow.snakemake("results/runs/base/trajectory.h5")
    log = (workflow.root / "results/logs/train/base.log").read_text()
    lines = re.findall(
        r"^\[\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\] train base: step (\d+)/44", log, flags=re.MULTILINE
    )
    assert [int(step) for step in lines] == [0, 1, 2, 10, 20, 30, 40, 44]


@pytest.mark.slow
def test_gpu_check_runs_end_to_end_on_the_cpu_at_a_toy_size():
    """benchmarks/gpu_check.py, the script for a lent GPU, at --device cpu --tiny: every check
    prints, and on the CPU both identities hold and replay ends exactly."""
    import subprocess
    import sys

    from helpers.runs import REPO

    result = subprocess.run(
        [sys.executable, "gpu_check.py", "--device", "cpu", "--tiny"],
        cwd=REPO / "benchmarks",
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr
    out = result.stdout
    for number in range(1, 7):
        assert f"\n{number}. " in out, out
    assert "two trainings bit-identical: True" in out and "two measure runs identical: True" in out
    assert "largest relative error at a segment's end 0 " in out
    assert "measured in bf16 against fp32" in out and "ResNet-50 consumes" in out
    assert "offloaded product of ResNet-20 at batch 16 against a training step:" in out
