"""A full disk during training (issue 17): the train job fails naming the file and the space,
its partial trajectory stays resumable, and once space is freed the rerun ends bit-identical to
a training that never ran out.

The disk is a small tmpfs the test mounts (as root, like CI; skipped elsewhere, failed under CI)
and later remounts larger. Two ways to run out: the writer's own check before each checkpoint
finds too little room and stops before writing any of it (the file stays as its last flush left
it); or, with that check switched off (as when another process fills the disk between the check
and the write), HDF5's flush fails half way and tears the file: the rerun cuts the torn tail.
"""

import os
import subprocess
from pathlib import Path

import pytest
import torch
from helpers.compare_results import assert_same_contents, hdf5_contents
from helpers.debian import skip_outside_ci
from helpers.runs import nwt_train, tiny_run

from nowrongturns.trajectory.format import partial_path

# 88 steps and 12 checkpoints of 117 kB, 2.2 MB in all; the disk sizes run out part way.
RUN = tiny_run(width=32, epochs=2)
DISK_KB = {"checked": 2600, "torn": 1200}
# Each checkpoint written as it comes, as the asserted steps assume; and with
# NWT_TEST_NO_SPACE_CHECK, no room checked before a write, so that the disk fills during one.
HOOK = """
import os, sys
if sys.argv[0].endswith("nwt"):
    from nowrongturns.record import log
    log.WRITE_EVERY_SECONDS = 0
if os.environ.get("NWT_TEST_NO_SPACE_CHECK") and sys.argv[0].endswith("nwt"):
    from nowrongturns.trajectory.writer import TrajectoryWriter
    TrajectoryWriter.check_space = lambda self, *args, **kwargs: None
"""


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> dict:
    """The training that never ran out, in this process with the job's one thread."""
    from nowrongturns.train.stage import train as train_in_process

    out = tmp_path_factory.mktemp("reference") / "trajectory.h5"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        train_in_process(RUN, out, device="cpu")
    finally:
        torch.set_num_threads(threads)
    return hdf5_contents(out)


def mount_tmpfs(folder: Path, kilobytes: int, remount: bool = False) -> None:
    options = f"{'remount,' if remount else ''}size={kilobytes}k"
    result = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", options, "tmpfs", folder], capture_output=True, text=True
    )
    if result.returncode:
        skip_outside_ci(f"mount -t tmpfs -o {options} failed: {result.stderr.strip()}")


@pytest.fixture
def small_disk(tmp_path):
    if os.geteuid() != 0:
        skip_outside_ci("mounting a small tmpfs needs root")
    folder = tmp_path / "disk"
    folder.mkdir()
    yield folder
    subprocess.run(["umount", folder], capture_output=True)


@pytest.mark.parametrize("write", list(DISK_KB))
def test_a_full_disk_fails_training_naming_the_file_and_the_rerun_resumes_it(
    tmp_path, small_disk, reference, write
):
    mount_tmpfs(small_disk, DISK_KB[write])
    hooks = tmp_path / "hooks"
    hooks.mkdir()
    (hooks / "sitecustomize.py").write_text(HOOK)
    env = {**os.environ, "PYTHONPATH": str(hooks)}
    if write == "torn":
        env.update(NWT_TEST_NO_SPACE_CHECK="1")
    trajectory = small_disk / "trajectory.h5"

    failed = nwt_train(RUN, trajectory, env)
    assert failed.returncode == 1, failed.stderr  # an error, not a crash
    error = failed.stderr.strip().splitlines()[-1]
    assert error.startswith(f"nwt train: error: {partial_path(trajectory)}: no space left on")
    assert " bytes are free there" in error, error
    assert not trajectory.exists() and partial_path(trajectory).exists()
    if write == "checked":
        assert "it resumes from the checkpoint at step 40" in error, error
    else:
        assert "the flush of the checkpoint at step 10 failed" in error, error

    mount_tmpfs(small_disk, 20_000, remount=True)  # space freed
    rerun = nwt_train(RUN, trajectory)
    assert rerun.returncode == 0, rerun.stderr
    resumed = "at step 40" if write == "checked" else "at step 2"  # the torn step 10 is cut
    assert f"resuming from the checkpoint {resumed}" in rerun.stderr
    if write == "torn":
        assert "the last 1 checkpoint(s) are torn" in rerun.stderr
    assert_same_contents(hdf5_contents(trajectory), reference)
