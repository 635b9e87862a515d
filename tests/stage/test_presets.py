"""Every preset in configs/ is a valid config; a preset replaces config.yaml's runs."""

import json
import math
import shlex
import shutil
from pathlib import Path

import pytest
import yaml
from helpers.datasets import first_files_of_every_layout
from helpers.runs import REPO, SCHEMA
from helpers.workflow import Workflow

from nowrongturns.config import expand_runs, validate_config
from nowrongturns.optim.learning_rates import peak_lr

PRESETS = sorted((REPO / "configs").glob("*.yaml"))


@pytest.mark.parametrize("preset", PRESETS, ids=lambda path: path.stem)
def test_preset_is_valid(preset: Path):
    runs = expand_runs(validate_config(yaml.safe_load(preset.read_text()), SCHEMA))
    assert len(runs) >= 2  # a base and at least one run that differs from it
    if preset.stem.startswith("cpu-"):  # runs here: embedded data only
        assert all(not run["data_dir"] for run in runs.values())


def test_preset_replaces_the_default_runs(tmp_path):
    flow = Workflow(tmp_path, yaml.safe_load((REPO / "config.yaml").read_text()))
    shutil.copytree(REPO / "configs", tmp_path / "configs")
    planned = flow.planned_jobs(
        "--configfile", "configs/cpu-language.yaml", "--replace-workflow-config"
    )
    trained = {run for stage, run in planned if stage == "train"}
    assert trained == {"base", "batch_size=16", "optimizer=momentum"}


def planned_train_runs(tmp_path, preset: str) -> dict[str, dict]:
    """Run name -> the run config of each train job that `snakemake -n -p` plans for a preset,
    read from the printed `nwt train --run ...` commands; the closed loop's retrainings
    (`base--derived`, `base--cosine`, on schedules derived later) left out."""
    flow = Workflow(tmp_path, yaml.safe_load((REPO / "config.yaml").read_text()))
    shutil.copytree(REPO / "configs", tmp_path / "configs")
    output = flow.snakemake(
        "--dry-run",
        "--printshellcmds",
        "--configfile",
        f"configs/{preset}.yaml",
        flow.write_config("data.yaml", {"data": first_files_of_every_layout(tmp_path / "data")}),
        "--replace-workflow-config",
    ).stdout
    runs = {}
    for line in output.splitlines():
        if "nwt train" in line:  # "Shell command: nwt train --run '{...}' --out ..."
            words = shlex.split(line[line.index("nwt train") :])
            run = json.loads(words[words.index("--run") + 1])
            runs[Path(words[words.index("--out") + 1]).parent.name] = run
    return {name: run for name, run in runs.items() if "--" not in name}


def test_cifar10_preset_plans_the_references_batch_size_sweep(tmp_path):
    """batchsize-cifar.sh: lr = 0.005 sqrt(B / 64), weight decay 1e-6, momentum 0.9, 190
    epochs, RandomCrop augmentation, for every batch size; seed-cifar.sh's seeds at lr 0.01."""
    runs = planned_train_runs(tmp_path, "paper-cifar10-resnet18")
    sweep = {
        run["batch_size"]: run
        for name, run in runs.items()
        if name == "base" or name.startswith("batch_size=")
    }
    assert sorted(sweep) == [64, 128, 256, 512]
    for batch_size, run in sweep.items():
        assert peak_lr(run) == pytest.approx(0.005 * math.sqrt(batch_size / 64))
        assert (run["weight_decay"], run["momentum"], run["optimizer"]) == (1e-6, 0.9, "momentum")
        assert (run["epochs"], run["augment"], run["schedule"]) == (190, "standard", "constant")
        assert (run["model"], run["width_multiplier"]) == ("resnet18", 1)
    seeds = {
        run["seed"]: peak_lr(run)
        for run in runs.values()
        if run["optimizer"] == "momentum"
        and run["batch_size"] == 256
        and run["lr_scaling"]["rule"] == "sqrt"
    }
    assert seeds == pytest.approx({seed: 0.01 for seed in range(2019, 2024)})
    optimizers = {run["optimizer"] for name, run in runs.items() if name.startswith("opt-")}
    assert optimizers == {"sgd", "momentum", "adam"}


# The values that define each other preset, on every run it plans (key: value, or a callable).
DEFINING = {
    "paper-cifar10-architecture": {
        "lr": 0.01,
        "batch_size": 256,
        "weight_decay": 1e-6,
        "momentum": 0.9,
        "augment": "standard",
        "epochs": lambda v: v in (150, 400),
        "model": lambda v: v in ("resnet18", "mlp"),
    },
    "paper-imagenet-resnet50": {
        "model": "resnet50",
        "weight_decay": 1e-6,
        "epochs": 180,
        "schedule": "warmup_cosine",
        "augment": "standard",
        "peak_lr": lambda run: math.isclose(
            peak_lr(run), 0.0005 * math.sqrt(run["batch_size"] / 64)
        ),
        "warmup_epochs": lambda run: math.isclose(run["warmup"] * run["epochs"], 3),
    },
    "paper-imagenet-model-size": {
        "batch_size": 256,
        "epochs": 180,
        "schedule": "warmup_cosine",
        "lr": lambda v: v in (0.1, 0.075),
        "model": lambda v: v in ("resnet18", "resnet50", "resnet152"),
    },
    "paper-wikitext2-transformer": {
        "optimizer": "adam",
        "weight_decay": 1e-5,
        "epochs": 20,
        "clip_grad_norm": 0.25,
        "width": 128,
        "context": 32,
        "peak_lr": lambda run: math.isclose(peak_lr(run), 1e-4 * math.sqrt(run["batch_size"] / 32)),
    },
    "paper-vaihingen-segmentation": {
        "optimizer": "momentum",
        "momentum": 0.9,
        "lr": 0.01,
        "weight_decay": 1e-5,
        "batch_size": 10,
        "schedule": "step",
        "decay": 0.1,
        "augment": "standard",
        "epochs": lambda v: v in (26, 50),
        "model": lambda v: v in ("unet", "segnet"),
        "epoch_25": lambda run: run["milestones"] == [pytest.approx(25 / run["epochs"])],
    },
}


@pytest.mark.parametrize("preset", list(DEFINING))
def test_every_planned_run_of_a_preset_has_its_defining_values(tmp_path, preset):
    runs = planned_train_runs(tmp_path, preset)
    assert len(runs) >= 2
    for name, run in runs.items():
        for key, expected in DEFINING[preset].items():
            if key not in run:  # a check of the whole run
                assert expected(run), (name, key)
            elif callable(expected):
                assert expected(run[key]), (name, key, run[key])
            else:
                assert run[key] == expected, (name, key, run[key])
