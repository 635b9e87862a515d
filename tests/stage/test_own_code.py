"""A researcher's own model, data and optimizer (docs/own-model.md): factories the config names,
timm architectures and torch.optim optimizers, through the same stages; and code a trajectory
names is imported only when the user names it too."""

import json
import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest
import torch
from helpers.compare_results import assert_same_contents, hdf5_contents
from helpers.runs import REPO, assert_rows_are_the_steps_taken, kill_hooks, nwt_train, tiny_run

from nowrongturns.config import validate_config
from nowrongturns.config.factories import FACTORY, TIMM_MODEL, TORCH_OPTIMIZER
from nowrongturns.measure.stage import measure

# A module of the user's own, in no package: a task read example by example from a torch
# Dataset, a gated MLP, mnist5k upsampled to 32 px (for timm), and factories that go wrong. Its
# import leaves a mark, so a test can tell whether it was imported.
LAB = """
import os
from pathlib import Path

import numpy as np
import torch
from torch import nn

from nowrongturns import Task
from nowrongturns.tasks.embedded import mnist5k_images

Path(os.environ.get("LAB_IMPORTED", os.devnull)).write_text("imported")


class Blobs(torch.utils.data.Dataset):
    def __init__(self, count, seed):
        rng = np.random.default_rng(seed)
        self.points = rng.normal(size=(count, 6)).astype(np.float32)
        self.labels = (self.points[:, 0] > 0) + 2 * (self.points[:, 1] > 0)

    def __len__(self):
        return len(self.points)

    def __getitem__(self, index):
        return self.points[index], int(self.labels[index])


def blobs(run):
    return Task.from_datasets("classification", Blobs(320, 0), Blobs(80, 1), num_classes=4)


class Gated(nn.Module):
    def __init__(self, inputs, width, classes):
        super().__init__()
        self.value, self.gate = nn.Linear(inputs, width), nn.Linear(inputs, width)
        self.out = nn.Linear(width, classes)

    def forward(self, x):
        return self.out(self.value(x) * torch.sigmoid(self.gate(x)))


def gated(input_shape, num_classes, run):
    return Gated(input_shape[0], run["width"], num_classes)


def mnist32(run):
    images, labels = mnist5k_images()
    images = nn.functional.interpolate(torch.tensor(images[:100]), size=32, mode="bilinear")
    return Task.from_arrays("classification", images, labels[:100], num_classes=10)


def a_string(input_shape, num_classes, run):
    return "not a module"


def one_class_too_many(input_shape, num_classes, run):
    return nn.Linear(input_shape[0], num_classes + 1)
"""

OWN_RUN = {
    "task": "lab:blobs",
    "model": "lab:gated",
    "width": 8,
    "batch_size": 32,
    "lr": 0.05,
    "epochs": 2,
    "checkpoint": {"dense_first": 3, "every": 5},
}


@pytest.fixture
def lab(tmp_path, monkeypatch) -> Path:
    """A working directory holding lab.py, importable from it (as the workflow's is)."""
    (tmp_path / "lab.py").write_text(LAB)
    monkeypatch.chdir(tmp_path)
    yield tmp_path
    sys.modules.pop("lab", None)


def snakemake(root: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    command = [sys.executable, "-m", "snakemake", "--cores", "2", *args]
    result = subprocess.run(command, cwd=root, env=env, capture_output=True, text=True, timeout=900)
    if check and result.returncode:
        raise AssertionError(f"snakemake failed:\n{result.stdout}\n{result.stderr}")
    return result


def workflow_dir(root: Path, config: dict) -> Path:
    root.mkdir(exist_ok=True)
    shutil.copy(REPO / "Snakefile", root)
    shutil.copytree(REPO / "workflow", root / "workflow")
    (root / "config.yaml").write_text(json.dumps(config))  # JSON is YAML
    return root


@pytest.mark.slow
def test_the_whole_workflow_runs_on_a_module_of_the_users_own(tmp_path):
    root = workflow_dir(
        tmp_path / "flow",
        {
            "base": {**OWN_RUN, "optimizer": "torch.optim.NAdam"},
            "measure": {"samples": 2, "data_workers": 1},
            "train": {"data_workers": 1},
            "schedule": {"smooth": 3, "retrain": False},
        },
    )
    (root / "lab.py").write_text(LAB)
    snakemake(root)
    results = root / "results"
    for table in ("trajectory.h5", "geometry.parquet", "schedule.csv", "schedule.json"):
        assert (results / "runs/base" / table).is_file(), table
    for figure in ("geometry", "schedule", "bound"):
        assert (results / f"figures/base/{figure}.png").stat().st_size > 10_000, figure
    sys.path.insert(0, str(root))
    try:
        import lab

        expected = sum(p.numel() for p in lab.gated((6,), 4, {"width": 8}).parameters())
    finally:
        sys.path.remove(str(root))
        sys.modules.pop("lab", None)
    with h5py.File(results / "runs/base/trajectory.h5") as f:
        assert f["checkpoints/weights"].shape[1] == expected == 8 * 6 * 2 + 8 * 2 + 8 * 4 + 4
        assert json.loads(f.attrs["config"])["model"] == "lab:gated"
        assert json.loads(f.attrs["data_provenance"])["factory"] == "lab:blobs"
    geometry = pd.read_parquet(results / "runs/base/geometry.parquet")
    assert set(geometry["source"]) >= {"train_batch", "update", "sampled", "full_batch"}
    # The module is an input of training: editing it retrains, and nothing else does.
    assert "rule train:" not in snakemake(root, "-n").stdout
    with open(root / "lab.py", "a") as module:
        module.write("# edited\n")
    assert "rule train:" in snakemake(root, "-n").stdout


# Adagrad's state exists before its first step and is not zeros (its accumulator starts at
# initial_accumulator_value); NAdam's mu_product starts at 1.
TORCH_OPTIMIZERS = {
    "torch.optim.NAdam": {"betas": [0.9, 0.99]},
    "torch.optim.Adagrad": {"initial_accumulator_value": 0.1},
}


@pytest.mark.slow
@pytest.mark.parametrize("optimizer", list(TORCH_OPTIMIZERS))
def test_a_torch_optimizer_resumes_bit_for_bit_and_its_update_is_the_step(optimizer, tmp_path):
    run = tiny_run(
        model="mlp",
        optimizer=optimizer,
        optimizer_options=TORCH_OPTIMIZERS[optimizer],
        lr=0.01,
        checkpoint={"dense_first": 4, "every": 10},
    )
    reference, killed = tmp_path / "reference.h5", tmp_path / "killed.h5"
    assert nwt_train(run, reference).returncode == 0
    # The 13th minibatch: step 12, after checkpoint 10 (which the background writer may not have
    # flushed yet: the resume starts from the last whole checkpoint, whichever it is).
    hooks = kill_hooks(tmp_path / "hooks")
    env = {**os.environ, "PYTHONPATH": str(hooks), "NWT_TEST_KILL_AT_BATCH": "13"}
    assert nwt_train(run, killed, env).returncode == -signal.SIGKILL
    resumed = nwt_train(run, killed)
    assert "resuming from the checkpoint at step" in resumed.stderr, resumed.stderr
    assert_same_contents(hdf5_contents(killed), hdf5_contents(reference))
    table = measure(reference, tmp_path / "g.parquet", "own", samples=1, device="cpu")
    assert_rows_are_the_steps_taken(table, reference, "update")


@pytest.mark.slow
@pytest.mark.parametrize("model", ["timm/resnet18", "timm/vit_tiny_patch16_224"])
def test_timm_architectures_train_and_are_measured(model, lab):
    pytest.importorskip("timm")
    run = tiny_run(
        task="lab:mnist32",
        model=model,
        batch_size=16,
        lr=0.01,
        checkpoint={"dense_first": 2, "every": 5},
    )
    from nowrongturns.train.stage import train

    assert train(run, lab / "t.h5", device="cpu") == "complete"
    table = measure(
        lab / "t.h5", lab / "g.parquet", "timm", samples=1, device="cpu", trusted=["lab:mnist32"]
    )
    assert np.isfinite(table["gamma"]).all() and set(table["step"]) == {0, 1}  # 5 steps
    import timm

    expected = timm.create_model(
        model.removeprefix("timm/"),
        num_classes=10,
        in_chans=1,
        **({"img_size": 32} if "vit" in model else {}),
    )
    with h5py.File(lab / "t.h5") as f:
        assert f["checkpoints/weights"].shape[1] == sum(p.numel() for p in expected.parameters())


@pytest.mark.slow
def test_malformed_factories_stop_naming_the_key_and_the_factory(tmp_path):
    """No colon: refused by the config check, before any job. A missing module or function, a
    factory returning something else, a model whose output does not fit: the train job stops,
    its log naming the key and what is wrong."""
    with pytest.raises(ValueError, match=r"base\.model: 'lab\.gated' is none of"):
        validate_config(
            {"base": {"model": "lab.gated"}}, REPO / "workflow/schemas/config.schema.yaml"
        )
    broken = {
        "missing_module": (
            {"model": "no_such_lab:gated"},
            "model 'no_such_lab:gated': cannot import module 'no_such_lab'",
        ),
        "missing_function": (
            {"task": "lab:no_such_task"},
            "task 'lab:no_such_task': module 'lab' has no 'no_such_task'",
        ),
        "wrong_type": (
            {"model": "lab:a_string"},
            "model 'lab:a_string' returned str, not a Module",
        ),
        "wrong_shape": (
            {"model": "lab:one_class_too_many"},
            "model 'lab:one_class_too_many' outputs (2, 5) on a batch of 2, where the "
            "classification task 'lab:blobs' needs (2, 4)",
        ),
    }
    root = workflow_dir(
        tmp_path / "flow",
        {
            "base": OWN_RUN,
            "runs": {name: changes for name, (changes, _) in broken.items()},
        },
    )
    (root / "lab.py").write_text(LAB)
    targets = [f"results/runs/{name}/trajectory.h5" for name in broken]
    result = snakemake(root, "--keep-going", *targets, check=False)
    assert result.returncode != 0
    for name, (_, message) in broken.items():
        log = (root / f"results/logs/train/{name}.log").read_text()
        assert f"nwt train: error: {message}" in log, (name, log)
        assert not (root / f"results/runs/{name}/trajectory.h5").exists()


def test_a_trajectory_naming_code_the_user_did_not_name_is_refused_unimported(lab):
    run = tiny_run(**{**OWN_RUN, "epochs": 1})
    trajectory = lab / "theirs.h5"
    assert nwt_train(run, trajectory).returncode == 0
    marker = lab / "imported"
    env = {**os.environ, "LAB_IMPORTED": str(marker)}
    nwt = [Path(sys.executable).parent / "nwt", "measure", "--device", "cpu", "--samples", "1"]

    def measure_it(path: Path, *trust: str) -> subprocess.CompletedProcess:
        command = [*nwt, path, "--out", lab / "g.parquet", *trust]
        return subprocess.run(command, cwd=lab, env=env, capture_output=True, text=True)

    refused = measure_it(trajectory, "--trust", "lab:blobs")
    assert refused.returncode == 1
    assert (
        "names the model factory 'lab:gated', which this command was not asked to trust"
        in refused.stderr
    )
    assert not marker.exists() and not (lab / "g.parquet").exists()
    # A trajectory whose config names a builtin is refused even when told to trust it.
    crafted = lab / "crafted.h5"
    shutil.copy(trajectory, crafted)
    with h5py.File(crafted, "r+") as f:
        f.attrs["config"] = json.dumps({**json.loads(f.attrs["config"]), "model": "builtins:exec"})
    refused = measure_it(crafted, "--trust", "builtins:exec")
    assert refused.returncode == 1
    assert (
        "model: 'builtins:exec' is a standard-library callable, never a factory" in refused.stderr
    )
    assert not marker.exists()
    # Named on the command line, the user's own factories are imported and measured.
    measured = measure_it(trajectory, "--trust", "lab:blobs", "--trust", "lab:gated")
    assert measured.returncode == 0, measured.stderr
    assert marker.exists() and (lab / "g.parquet").exists()


def test_the_schema_forms_are_the_ones_the_code_reads():
    import yaml

    schema = yaml.safe_load((REPO / "workflow/schemas/config.schema.yaml").read_text())
    base = schema["properties"]["base"]["properties"]
    forms = {
        "factory": (base["task"]["anyOf"][1]["pattern"], FACTORY),
        "timm": (base["model"]["anyOf"][1]["pattern"], TIMM_MODEL),
        "optimizer": (base["optimizer"]["anyOf"][1]["pattern"], TORCH_OPTIMIZER),
    }
    assert base["model"]["anyOf"][2]["pattern"] == forms["factory"][0]
    names = [
        "lab:gated",
        "my.lab:nets.build",
        "lab.gated",
        "lab:",
        ":gated",
        "a b:c",
        "timm/resnet18",
        "timm/vit_tiny_patch16_224",
        "timm/",
        "torch.optim.NAdam",
        "torch.optim.nadam",
        "torch.optim.",
    ]
    for pattern, compiled in forms.values():
        for name in names:
            assert bool(re.match(pattern, name)) == bool(compiled.match(name)), (pattern, name)


def test_task_constructors_refuse_what_does_not_fit():
    from nowrongturns.tasks.task import Task

    with pytest.raises(ValueError, match="3 inputs but 2 targets"):
        Task.from_arrays("classification", np.zeros((3, 2)), np.zeros(2), num_classes=2)
    with pytest.raises(ValueError, match="kind 'detection' is none of"):
        Task.from_arrays("detection", np.zeros((10, 2)), np.zeros(10), num_classes=2)
    task = Task.from_arrays("regression", np.ones((10, 2)), np.ones(10), num_classes=1)
    inputs, targets = task.batch(torch.arange(3))
    assert inputs.dtype == targets.dtype == torch.float32 and task.train_size == 8


@pytest.mark.slow
def test_the_page_your_own_model_runs_as_written(tmp_path):
    """The commands of docs/own-model.md, run from a checkout's layout (the example beside the
    Snakefile)."""
    page = (REPO / "docs/own-model.md").read_text()
    commands = "\n".join(re.findall(r"```bash\n(.*?)```", page, flags=re.S))
    assert "snakemake" in commands
    checkout = workflow_dir(tmp_path / "checkout", {})
    shutil.copytree(REPO / "examples", checkout / "examples")
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    result = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", commands],
        cwd=checkout,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.split() == [
        "bound.png",
        "geometry.png",
        "interpolation.png",
        "schedule.png",
    ]
    example = checkout / "examples/own_model/results"
    with h5py.File(example / "runs/base/trajectory.h5") as f:
        config = json.loads(f.attrs["config"])
    assert (config["model"], config["optimizer"]) == ("my_lab:residual_mlp", "torch.optim.NAdam")
    assert (example / "runs/seed=1/geometry.parquet").is_file()


def test_a_run_naming_its_own_code_still_has_its_settings_checked():
    """Its sizes wait for the job; a missing schedule file or a batch that does not split into
    the DDP processes does not."""
    schema = REPO / "workflow/schemas/config.schema.yaml"
    own = {"model": "lab:gated", "task": "lab:blobs", "batch_size": 33}
    with pytest.raises(ValueError, match=r"base\.batch_size: 33 does not divide into train"):
        validate_config({"base": own, "train": {"processes": 2}}, schema)
    with pytest.raises(ValueError, match=r"base\.schedule_file: 'gone\.json': no such file"):
        validate_config({"base": {**own, "schedule": "file", "schedule_file": "gone.json"}}, schema)
