"""Files from elsewhere cannot run code or take the memory they claim: a CIFAR batch carrying a
pickle payload is refused before any of it runs, and a trajectory lying about its sizes is refused
before its rows are allocated, each naming the file and what it refused."""

from __future__ import annotations

import pickle
import subprocess
import sys
import tracemalloc
from pathlib import Path

import h5py
import numpy as np
import pytest
from helpers.datasets import write_cifar10
from helpers.runs import nwt_train, one_line_error, tiny_run

from nowrongturns.tasks.cifar_pickle import load_cifar_batch
from nowrongturns.tasks.load import load_task
from nowrongturns.trajectory.format import TrajectoryError
from nowrongturns.trajectory.reader import TrajectoryReader


class Payload:
    """Unpickled by `pickle.load`, it creates the file `marker`: a stand-in for any code."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return open, (self.marker, "w")


def test_cifar_batch_carrying_a_payload_is_refused_by_the_train_job_and_never_runs(tmp_path):
    folder = write_cifar10(tmp_path / "data", np.random.default_rng(0))
    marker = tmp_path / "the-payload-ran"
    batch = pickle.loads((folder / "data_batch_1").read_bytes())
    (folder / "data_batch_1").write_bytes(pickle.dumps({**batch, "extra": Payload(marker)}))
    pickle.loads(pickle.dumps(Payload(tmp_path / "control"))).close()  # what pickle.load does
    assert (tmp_path / "control").exists()

    result = nwt_train(
        tiny_run(task="cifar10", model="mlp", data_dir=str(tmp_path / "data")),
        tmp_path / "run" / "trajectory.h5",
    )
    assert result.returncode == 1
    assert not marker.exists()
    error = one_line_error(result.stderr)
    assert str(folder / "data_batch_1") in error and "global io.open" in error
    assert not (tmp_path / "run" / "trajectory.h5").exists()


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_cifar_batches_of_every_pickle_protocol_load_as_plain_pickle_reads_them(tmp_path, protocol):
    """The official release (Python 2, protocol 2, numpy.core's globals) and pickles written by
    today's numpy (numpy._core, protocol 5's buffers) hold the same arrays through the
    restricted unpickler as through pickle.load."""
    rng = np.random.default_rng(1)
    batch = {
        "batch_label": "training batch 1 of 5",
        "data": rng.integers(0, 256, (4, 3072), dtype=np.uint8),
        "labels": [3, 1, 4, 1],
        "filenames": [f"image_{i}.png" for i in range(4)],
    }
    data = pickle.dumps(batch, protocol=protocol)
    if protocol == 2:  # as the official files name the reconstruction (numpy before 2.0)
        data = data.replace(b"numpy._core.multiarray", b"numpy.core.multiarray")
        assert b"cnumpy.core.multiarray\n_reconstruct" in data
    (tmp_path / "data_batch_1").write_bytes(data)
    loaded = load_cifar_batch(tmp_path / "data_batch_1", "cifar10")
    assert loaded.keys() == batch.keys()
    np.testing.assert_array_equal(loaded["data"], batch["data"])
    assert loaded["data"].dtype == np.uint8 and loaded["labels"] == batch["labels"]


@pytest.mark.parametrize(
    "payload, refused",
    [
        ((__import__("os").system, ("true",)), "posix.system"),
        ((np.ndarray, ((10**11,),)), "numpy.ndarray called directly"),
        ((np.load, ("x.npy",)), "numpy.load"),
    ],
)
def test_restricted_unpickler_refuses_every_other_global_naming_file_and_global(
    tmp_path, payload, refused
):
    class Carrier:
        def __reduce__(self):
            return payload

    path = tmp_path / "data_batch_1"
    path.write_bytes(pickle.dumps({"data": Carrier()}, protocol=2))
    with pytest.raises(Exception, match=refused) as error:
        load_cifar_batch(path, "cifar10")
    assert str(path) in str(error.value) and isinstance(error.value, ValueError)


def test_cifar_tasks_still_load_the_tests_tiny_files(tmp_path):
    write_cifar10(tmp_path, np.random.default_rng(0))
    task = load_task(tiny_run(task="cifar10", data_dir=str(tmp_path)))
    assert task.train_size == 8 and task.provenance["official_release"] is False


def lying_copy(trajectory, path, weights_width=None, param_count=None):
    """A copy of a trajectory whose weights dataset is declared `weights_width` values wide
    (nothing written: HDF5 allows it) and/or whose param_count attribute says `param_count`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(trajectory.read_bytes())
    with h5py.File(path, "r+") as file:
        if weights_width is not None:
            count = len(file["checkpoints/step"])
            del file["checkpoints/weights"]
            file["checkpoints"].create_dataset(
                "weights",
                (count, weights_width),
                dtype=np.float32,
                chunks=(1, 1 << 20),
                fletcher32=True,
                maxshape=(None, weights_width),
            )
        if param_count is not None:
            file.attrs["param_count"] = param_count
    return path


LIES = {
    "weights 10^11 wide": ({"weights_width": 10**11}, "/checkpoints/weights"),
    "weights and param_count 10^11": (
        {"weights_width": 10**11, "param_count": 10**11},
        "/checkpoints/weights",
    ),
    "param_count 10^12": ({"param_count": 10**12}, "param_count"),
}


@pytest.mark.parametrize("lie", LIES)
def test_trajectory_claiming_1e11_parameters_is_refused_before_100_mb_is_taken(
    trained, tmp_path, lie
):
    changes, field = LIES[lie]
    path = lying_copy(trained()[1], tmp_path / "trajectory.h5", **changes)
    tracemalloc.start()
    try:
        with pytest.raises(TrajectoryError) as error, TrajectoryReader(path) as trajectory:
            trajectory.weights(-1)  # what measuring it reads first
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 100e6
    assert str(path) in str(error.value) and field in str(error.value)


def test_nwt_measure_refuses_a_lying_trajectory_in_one_line(trained, tmp_path):
    path = lying_copy(trained()[1], tmp_path / "run" / "trajectory.h5", weights_width=10**11)
    out = tmp_path / "run" / "geometry.parquet"
    command = [Path(sys.executable).parent / "nwt", "measure", path, "--out", out]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert result.returncode == 1 and not out.exists()
    error = one_line_error(result.stderr)
    assert str(path) in error and "/checkpoints/weights" in error
