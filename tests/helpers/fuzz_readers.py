"""The readers the fuzz suite feeds mutated files: for each, the valid input it starts from (made
from a real run's files), the mutations of that file, and the stage that reads it, run as the
workflow runs it (`nwt <stage>` where a command reads the file; the task loader and every batch of
its examples where the train job reads a dataset).

One more reader is one more entry of READERS: a `make` that puts a valid input under a folder and
returns the file to mutate, a strategy of mutations of that file (fuzzing.py), a `read` of the
mutated file, and its share of the examples.
"""

from __future__ import annotations

import json
import pickle
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from hypothesis import strategies as st

from helpers import fuzzing
from helpers.datasets import write_cifar10, write_image_folder, write_vaihingen, write_wikitext
from helpers.runs import tiny_run


@dataclass(frozen=True)
class Reader:
    make: Callable[[Path, Path], Path]  # (folder, the session's valid run) -> the file to mutate
    mutations: Callable[[Path], object]  # the file -> a strategy of mutations
    read: Callable[[Path, Path], object]  # (the mutated file, an empty output folder)
    examples: int


def nwt(*args) -> None:
    from nowrongturns.cli import main

    main([str(arg) for arg in args])


# --- the workflow's own files -----------------------------------------------------------------


def copy_run(names: list[str], target: str):
    def make(folder: Path, run: Path) -> Path:
        for name in names:
            shutil.copy(run / name, folder / name)
        return folder / target

    return make


def measure(path: Path, out: Path) -> None:
    nwt(
        "measure",
        path,
        "--out",
        out / "geometry.parquet",
        "--samples",
        "1",
        "--no-full-batch",
        "--no-random-labels",
        "--device",
        "cpu",
        "--threads",
        "1",
    )


def schedule(path: Path, out: Path) -> None:
    nwt(
        "schedule",
        path,
        path.parent / "trajectory.h5",
        "--smooth",
        "3",
        "--csv",
        out / "schedule.csv",
        "--json",
        out / "schedule.json",
        "--bound",
        out / "bound.csv",
        "--cosine",
        out / "cosine.json",
    )


def figures(path: Path, out: Path) -> None:
    nwt("figures", "--run-dir", path.parent, "--out-dir", out, "geometry")


def claims(path: Path, out: Path) -> None:
    nwt(
        "claims",
        "--config",
        path.parent / "config.json",
        "--csv",
        out / "claims.csv",
        "--html",
        out / "claims.html",
        "--geometry",
        path,
        "--schedules",
        path.parent / "schedule.json",
    )


def schedule_file(path: Path, out: Path) -> None:
    """`schedule: file`: the learning rates a train job reads from the file."""
    from nowrongturns.optim.learning_rates import file_schedule

    lrs = file_schedule(str(path), 44)
    assert lrs.shape == (44,) and np.isfinite(lrs).all() and (lrs > 0).all()


# --- datasets ---------------------------------------------------------------------------------


def every_batch(run: dict) -> None:
    """The task loaded and every example of both splits drawn, as training and measuring do."""
    import torch

    from nowrongturns.tasks.load import load_task

    task = load_task(run)
    for split, size in (("train", task.train_size), ("validation", len(task.validation))):
        inputs, _ = task.batch(torch.arange(size), split)
        assert inputs.shape[0] == size


def make_cifar(folder: Path, run: Path) -> Path:
    return write_cifar10(folder, np.random.default_rng(0)) / "data_batch_1"


def read_cifar(path: Path, out: Path) -> None:
    every_batch(tiny_run(task="cifar10", model="mlp", data_dir=str(path.parents[1])))


@dataclass(frozen=True)
class PickleField:
    """A CIFAR batch with one field set: wrong shapes and types, or an object whose unpickling
    would run code (the restricted unpickler must refuse it)."""

    key: str
    value: object

    def apply(self, path: Path) -> None:
        batch = pickle.loads(path.read_bytes())
        batch[self.key] = self.value
        path.write_bytes(pickle.dumps(batch, protocol=2))


class RunsCode:
    def __reduce__(self):
        return (print, ("unpickled",))


def cifar_mutations(path: Path):
    values = st.sampled_from(
        [
            np.zeros((2, 3072), np.float32),
            np.zeros((3, 100), np.uint8),
            np.zeros((10**6, 0), np.uint8),
            np.zeros((2, 3072), object),
            [1] * 99,
            [-1, 10**12],
            "x",
            None,
            RunsCode(),
        ]
    )
    field = st.builds(PickleField, st.sampled_from(["data", "labels", "filenames"]), values)
    return st.lists(field | fuzzing.byte_edits(2), min_size=1, max_size=2).map(fuzzing.Edits)


def make_imagenet(folder: Path, run: Path) -> Path:
    write_image_folder(folder / "train", {"n01440764": 2, "n01443537": 2})
    write_image_folder(folder / "val", {"n01440764": 1, "n01443537": 1})
    return folder / "train" / "n01440764" / "n01440764_1.JPEG"


def read_imagenet(path: Path, out: Path) -> None:
    every_batch(tiny_run(task="imagenet", model="mlp", data_dir=str(path.parents[2])))


def make_vaihingen(folder: Path, run: Path) -> Path:
    write_vaihingen(folder, np.random.default_rng(0), {1: (20, 17), 28: (16, 9)}, masked={1, 28})
    return folder / "top" / "top_mosaic_09cm_area1.tif"


def read_vaihingen(path: Path, out: Path) -> None:
    every_batch(
        tiny_run(task="vaihingen", model="unet", depth=1, tile=8, data_dir=str(path.parents[1]))
    )


def make_wikitext(folder: Path, run: Path) -> Path:
    write_wikitext(folder)
    return folder / "wiki.train.tokens"


def read_wikitext(path: Path, out: Path) -> None:
    every_batch(
        tiny_run(task="wikitext2", model="transformer", context=3, data_dir=str(path.parent))
    )


# Checkpoints to import (`nwt import`): two of a digits MLP, the second mutated.
IMPORTED_RUN = {"task": "digits", "model": "mlp", "width": 4, "depth": 1, "batch_size": 32}


def make_checkpoints(suffix: str):
    def make(folder: Path, run: Path) -> Path:
        import torch
        from safetensors.torch import save_file

        from nowrongturns.models import build_model
        from nowrongturns.tasks.load import load_task

        torch.manual_seed(0)
        model = build_model(IMPORTED_RUN, load_task(IMPORTED_RUN))
        for step in (0, 5):
            state = {name: value.clone() + step for name, value in model.state_dict().items()}
            path = folder / f"step_{step}{suffix}"
            save_file(state, path) if suffix == ".safetensors" else torch.save(state, path)
        return path

    return make


def import_checkpoints(path: Path, out: Path) -> None:
    nwt(
        "import",
        path.parent / f"*{path.suffix}",
        "--run",
        json.dumps(IMPORTED_RUN),
        "--out",
        out / "trajectory.h5",
    )


def bytes_only(path: Path):
    return fuzzing.byte_edits()


READERS = {
    "trajectory (nwt measure)": Reader(
        copy_run(["trajectory.h5"], "trajectory.h5"), fuzzing.hdf5_mutations, measure, 250
    ),
    "schedule.json (schedule: file)": Reader(
        copy_run(["schedule.json"], "schedule.json"), fuzzing.json_mutations, schedule_file, 200
    ),
    "geometry.parquet (nwt schedule)": Reader(
        copy_run(["geometry.parquet", "trajectory.h5"], "geometry.parquet"),
        fuzzing.parquet_mutations,
        schedule,
        60,
    ),
    "geometry.parquet (nwt figures)": Reader(
        copy_run(["geometry.parquet"], "geometry.parquet"), fuzzing.parquet_mutations, figures, 30
    ),
    "geometry.parquet (nwt claims)": Reader(
        copy_run(["geometry.parquet", "schedule.json", "config.json"], "geometry.parquet"),
        fuzzing.parquet_mutations,
        claims,
        120,
    ),
    "CIFAR batch (train job)": Reader(make_cifar, cifar_mutations, read_cifar, 200),
    "ImageFolder JPEG (train job)": Reader(make_imagenet, bytes_only, read_imagenet, 80),
    "Vaihingen TIFF (train job)": Reader(make_vaihingen, bytes_only, read_vaihingen, 60),
    "WikiText tokens (train job)": Reader(make_wikitext, bytes_only, read_wikitext, 150),
    "checkpoint .pt (nwt import)": Reader(
        make_checkpoints(".pt"), bytes_only, import_checkpoints, 60
    ),
    "checkpoint .safetensors (nwt import)": Reader(
        make_checkpoints(".safetensors"), bytes_only, import_checkpoints, 60
    ),
}


def valid_run(folder: Path) -> Path:
    """A tiny run's files as the workflow writes them: trajectory, geometry table, schedule,
    and the workflow config the claims read."""
    from nowrongturns.measure.stage import measure as measure_stage
    from nowrongturns.schedule.stage import derive_schedule
    from nowrongturns.train.stage import train

    run = tiny_run(width=2, checkpoint={"dense_first": 2, "every": 20})
    train(run, folder / "trajectory.h5", device="cpu", run_name="base")
    measure_stage(
        folder / "trajectory.h5",
        folder / "geometry.parquet",
        "base",
        samples=2,
        full_batch=True,
        random_labels=True,
        device="cpu",
    )
    derive_schedule(
        folder / "geometry.parquet",
        folder / "trajectory.h5",
        folder / "schedule.csv",
        folder / "schedule.json",
        folder / "bound.csv",
        folder / "cosine.json",
        smooth=3,
    )
    base = {key: run[key] for key in ("task", "model", "width", "lr", "batch_size", "epochs")}
    (folder / "config.json").write_text(json.dumps({"base": base}))
    return folder
