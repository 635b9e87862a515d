"""Every task trains a few steps with each model made for it, and is measured: embedded tasks on
their real data, local-path tasks on tiny files in the real on-disk formats (see test_tasks.py).
"""

import h5py
import numpy as np
import pandas as pd
import pytest
from helpers.datasets import (
    write_cifar10,
    write_cifar100,
    write_image_folder,
    write_vaihingen,
    write_wikitext,
)
from helpers.runs import tiny_run

from nowrongturns.measure.stage import measure
from nowrongturns.train.stage import train

SMALL = {"width": 4, "depth": 1, "checkpoint": {"dense_first": 2, "every": 2}}
CASES = {
    # task, model: run settings (a few steps each)
    ("digits", "mlp"): {"batch_size": 256},
    ("digits", "cnn"): {"batch_size": 256},
    ("digits", "resnet"): {"batch_size": 256},
    ("digits", "resnet18"): {"batch_size": 512},
    ("digits", "resnet50"): {"batch_size": 512},
    ("mnist5k", "cnn"): {"batch_size": 1024},
    ("mnist5k-seg", "unet"): {"batch_size": 1024, "depth": 2},
    ("mnist5k-seg", "segnet"): {"batch_size": 1024, "depth": 2},
    ("pydoc", "transformer"): {"batch_size": 4096, "width": 8, "heads": 2, "context": 16},
    ("cifar10", "resnet"): {"batch_size": 4},
    ("cifar100", "cnn"): {"batch_size": 2},
    ("imagenet", "resnet18"): {"batch_size": 2},
    ("wikitext2", "transformer"): {"batch_size": 2, "width": 8, "heads": 2, "context": 3},
    ("vaihingen", "unet"): {"batch_size": 2, "tile": 16, "depth": 2},
}
# One model per kind of task is also measured, to the geometry table.
MEASURED = {
    ("digits", "resnet"),
    ("vaihingen", "unet"),
    ("pydoc", "transformer"),
    ("imagenet", "resnet18"),
}


def write_data(task: str, root) -> str:
    """Tiny files of a local-path task under root; '' for an embedded task."""
    rng = np.random.default_rng(0)
    root.mkdir()
    if task == "cifar10":
        write_cifar10(root, rng)
    elif task == "cifar100":
        write_cifar100(root, rng)
    elif task == "imagenet":
        write_image_folder(root / "train", {"n01440764": 3, "n01443537": 3})
        write_image_folder(root / "val", {"n01440764": 1, "n01443537": 1})
    elif task == "wikitext2":
        write_wikitext(root)
    elif task == "vaihingen":
        write_vaihingen(root, rng, {1: (40, 36), 28: (33, 50)}, masked={1, 28})
    else:
        return ""
    return str(root)


@pytest.mark.slow
@pytest.mark.parametrize("task, model", list(CASES))
def test_task_trains_with_its_model(tmp_path, task, model):
    data = write_data(task, tmp_path / "data")
    run = tiny_run(task=task, model=model, data_dir=data, **{**SMALL, **CASES[task, model]})
    trajectory = tmp_path / "trajectory.h5"
    assert train(run, trajectory, device="cpu") == "complete"
    with h5py.File(trajectory) as f:
        losses = f["steps/loss"][:]
        assert len(losses) >= 2 and np.isfinite(losses).all()
        assert len(f["checkpoints/step"]) >= 2
    if (task, model) in MEASURED:
        measure(
            trajectory,
            tmp_path / "geometry.parquet",
            run_name=task,
            samples=1,
            full_batch=True,
            random_labels=True,
            device="cpu",
        )
        table = pd.read_parquet(tmp_path / "geometry.parquet")
        assert np.isfinite(table[["rsi", "eb", "gamma"]].to_numpy()).all()
        assert set(table["source"]) == {
            "train_batch",
            "update",
            "sampled",
            "full_batch",
            "random_labels",
        }
