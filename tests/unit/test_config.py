"""Config validation (defaults, errors naming the key) and the expansion of ablations into runs."""

import pytest
from helpers.runs import SCHEMA, TINY_BASE
from helpers.workflow import Workflow

from nowrongturns.config import ConfigError, ablation_levels, expand_runs, validate_config


def test_defaults_fill_every_key():
    config = validate_config({}, SCHEMA)
    assert config["base"]["batch_size"] == 64
    assert config["base"]["checkpoint"] == {"dense_first": 10, "every": 10, "every_epochs": None}
    assert config["base"]["batch_shards"] == 1
    assert config["measure"]["full_batch_chunk"] == "batch"
    assert config["measure"]["samples"] == 8
    assert config["resources"]["measure"] == {
        "threads": 1,
        "mem_mb": 2000,
        "runtime": 60,
        "gpu": 1,
        "gpu_model": None,
    }
    assert config["results"] == "results"


def test_runs_differ_from_base_in_one_factor():
    config = validate_config(
        {"base": {"lr": 0.1}, "ablations": {"batch_size": [16, 64, 256], "lr": [0.5]}}, SCHEMA
    )
    runs = expand_runs(config)
    # 64 is the base batch size: that level is the base run itself, not a copy of it.
    assert list(runs) == ["base", "batch_size=16", "batch_size=256", "lr=0.5"]
    assert runs["batch_size=16"] == {**runs["base"], "batch_size": 16}
    assert runs["base"]["data_dir"] == ""
    assert runs["lr=0.5"]["lr"] == 0.5 and runs["lr=0.5"]["batch_size"] == 64


def test_gpu_stages_keep_their_gpu_when_a_config_sets_other_resources():
    config = validate_config(
        {"resources": {stage: {"threads": 2} for stage in ("train", "replay", "figures")}},
        SCHEMA,
    )
    gpus = {stage: settings["gpu"] for stage, settings in config["resources"].items()}
    assert gpus == {"train": 1, "measure": 1, "replay": 1, "schedule": 0, "figures": 0}
    assert config["resources"]["train"]["threads"] == 2


@pytest.mark.parametrize(
    "config, key",
    [
        ({"bse": {}}, "bse"),
        ({"base": {"bach_size": 32}}, "bach_size"),
        ({"base": {"lr": "fast"}}, "base.lr"),
        ({"base": {"batch_size": 0}}, "base.batch_size"),
        ({"base": {"optimizer": "rmsprop"}}, "base.optimizer"),
        ({"ablations": {"colour": [1]}}, "ablations.colour"),
        ({"ablations": {"batch_size": ["big"]}}, "ablations.batch_size[0]"),
        ({"measure": {"samples": 2.5}}, "measure.samples"),
        ({"resources": {"train": {"gpus": 1}}}, "resources.train"),
        ({"resources": {"replay": {"gpu_model": "A100 80GB"}}}, "resources.replay.gpu_model"),
    ],
)
def test_errors_name_the_key(config, key):
    with pytest.raises(ConfigError) as error:
        validate_config(config, SCHEMA)
    assert key in str(error.value)


def test_named_runs_change_several_settings():
    config = validate_config(
        {"runs": {"lm": {"task": "pydoc", "model": "transformer"}}, "ablations": {"seed": [1]}},
        SCHEMA,
    )
    runs = expand_runs(config)
    assert list(runs) == ["base", "seed=1", "lm"]
    assert runs["lm"]["model"] == "transformer" and runs["lm"]["lr"] == runs["base"]["lr"]


@pytest.mark.parametrize(
    "config, key",
    [
        ({"runs": {"lm": {"modle": "transformer"}}}, "runs.lm"),
        ({"runs": {"seed=1": {"seed": 5}}, "ablations": {"seed": [1]}}, "runs.seed=1"),
        ({"runs": {"a/b": {}}}, "runs"),
        ({"base": {"task": "cifar10"}}, "data.cifar10"),
    ],
)
def test_run_errors_name_the_key(config, key):
    with pytest.raises(ConfigError, match=key):
        validate_config(config, SCHEMA)


def test_ablation_levels_come_from_the_runs_settings():
    config = validate_config(
        {
            "base": {"batch_size": 64, "seed": 0},
            "ablations": {"batch_size": [256, 16], "seed": [1, 2], "optimizer": ["adam"]},
            "runs": {
                "crossed": {"batch_size": 16, "seed": 1},  # a replicate of level 16
                "lm": {"task": "pydoc", "model": "transformer"},  # at no level
            },
        },
        SCHEMA,
    )
    levels = ablation_levels(config)
    assert list(levels) == ["batch_size", "seed", "optimizer"]
    # Numbers in order; the base value is a level, with base and its seed replicates.
    assert levels["batch_size"] == [
        (16, ["batch_size=16", "crossed"]),
        (64, ["base", "seed=1", "seed=2"]),
        (256, ["batch_size=256"]),
    ]
    assert levels["seed"] == [(0, ["base"]), (1, ["seed=1"]), (2, ["seed=2"])]
    assert levels["optimizer"] == [
        ("sgd", ["base", "seed=1", "seed=2"]),
        ("adam", ["optimizer=adam"]),
    ]


def test_a_task_ablation_differs_in_the_task_alone():
    """Its data directory follows the task: not a second difference."""
    config = validate_config(
        {"ablations": {"task": ["cifar10"]}, "data": {"cifar10": "/data/cifar"}}, SCHEMA
    )
    assert ablation_levels(config)["task"] == [("digits", ["base"]), ("cifar10", ["task=cifar10"])]


def pydoc_training_windows(context: int) -> int:
    """Task pydoc's training windows at `context`, counted from the corpus this interpreter ships
    (the topics grow with each Python: 18 at context 20000 on 3.11, 19 on 3.12, 20 on 3.13)."""
    from pydoc_data.topics import topics

    windows = len("\n".join(topics[key] for key in sorted(topics))) // (context + 1)
    return windows - round(0.2 * windows)


@pytest.mark.parametrize(
    "config, key",
    [
        ({"base": {"weight_decay": float("inf")}}, "base.weight_decay: inf is not a finite"),
        ({"base": {"milestones": [0.5, float("nan")]}}, "base.milestones[1]: nan"),
        ({"ablations": {"lr": [0.1, float("nan")]}}, "ablations.lr[1]: nan"),
        ({"runs": {"a": {"clip_grad_norm": float("inf")}}}, "runs.a.clip_grad_norm: inf"),
        ({"base": {"seed": 2**63}}, "base.seed"),
        ({"base": {"model": "transformer"}}, "base.model: transformer is a language model"),
        (
            {"runs": {"lm": {"task": "pydoc", "model": "transformer", "heads": 3}}},
            "runs.lm.heads: 3 heads do not divide width 16",
        ),
        (
            {"base": {"heads": 5}, "runs": {"lm": {"task": "pydoc", "model": "transformer"}}},
            "base.heads",
        ),
        (
            {"ablations": {"depth": [5]}, "base": {"task": "mnist5k-seg", "model": "unet"}},
            "ablations.depth[0]: unet of depth 5 halves the 28-pixel inputs",
        ),
        ({"base": {"model": "resnet18", "width_multiplier": 0.01}}, "base.width_multiplier"),
        ({"base": {"batch_size": 1439}}, "base.batch_size: 1439 exceeds the 1438 training"),
        (
            {"runs": {"lm": {"task": "pydoc", "model": "transformer", "context": 10**7}}},
            "runs.lm.context: 10000000: no window of context + 1 characters",
        ),
        (
            {"runs": {"lm": {"task": "pydoc", "model": "transformer", "context": 20000}}},
            f"base.batch_size: 64 exceeds the {pydoc_training_windows(20000)} training examples of "
            "task pydoc at context 20000",
        ),
        ({"train": {"processes": 3}}, "base.batch_size: 64 does not divide into train.processes"),
        ({"base": {"schedule": "file", "schedule_file": "no/such.json"}}, "base.schedule_file"),
        (
            {"base": {"model": "resnet18", "batch_size": 2}, "train": {"processes": 2}},
            "base.batch_size: 2 in 2 shard(s) (train.processes x batch_shards) gives the BatchNorm",
        ),
        (
            {"base": {"model": "resnet18"}, "measure": {"full_batch_chunk": 1437}},
            "measure.full_batch_chunk: 1437 leaves one example in the last chunk",
        ),
        (
            {"base": {"epochs": 10**7, "checkpoint": {"dense_first": 1, "every": 1}}},
            "base: its trajectory would take about 9.03e+03 GB (220000001 checkpoints",
        ),
    ],
)
def test_what_the_schema_cannot_state_is_refused_naming_the_key(config, key):
    with pytest.raises(ConfigError) as error:
        validate_config(config, SCHEMA)
    assert key in str(error.value)


def test_a_problem_of_base_is_named_once_under_base():
    with pytest.raises(ConfigError) as error:
        validate_config({"base": {"batch_size": 2000}, "ablations": {"seed": [1, 2]}}, SCHEMA)
    assert str(error.value).splitlines()[1:] == [
        "  base.batch_size: 2000 exceeds the 1438 training examples of task digits (run 'base')"
    ]


def test_max_checkpoint_gb_is_the_knob():
    huge = {"base": {"epochs": 10**7, "checkpoint": {"dense_first": 1, "every": 1}}}
    with pytest.raises(ConfigError, match="over train.max_checkpoint_gb = 1000"):
        validate_config(huge, SCHEMA)
    validate_config({**huge, "train": {"max_checkpoint_gb": 10**5}}, SCHEMA)
    # The largest seed torch and every table take, and a batch of every training example.
    validate_config({"base": {"seed": 2**63 - 1, "batch_size": 1438}}, SCHEMA)


# The five values, each refused by a real `snakemake -n` before any job, naming the key.
REFUSED_BY_SNAKEMAKE = {
    "nan-lr": ({"base": {**TINY_BASE, "lr": float("nan")}}, "base.lr: nan is not a finite"),
    "nan-momentum": (
        {"base": {**TINY_BASE, "optimizer": "momentum", "momentum": float("nan")}},
        "base.momentum: nan is not a finite",
    ),
    "seed-2^70": ({"base": TINY_BASE, "ablations": {"seed": [2**70]}}, "ablations.seed[0]"),
    "heads": (
        {
            "base": TINY_BASE,
            "runs": {
                "language": {"task": "pydoc", "model": "transformer", "width": 16, "heads": 3}
            },
        },
        "runs.language.heads: 3 heads do not divide width 16",
    ),
    "checkpoint-bytes": (
        {
            "base": TINY_BASE,
            "runs": {
                "huge": {
                    "width": 256,
                    "epochs": 10**4,
                    "checkpoint": {"dense_first": 1, "every": 1},
                }
            },
        },
        "runs.huge: its trajectory would take about",
    ),
}


@pytest.mark.parametrize("case", list(REFUSED_BY_SNAKEMAKE))
def test_snakemake_refuses_before_any_job_naming_the_key(tmp_path, case):
    config, key = REFUSED_BY_SNAKEMAKE[case]
    flow = Workflow(tmp_path, config)
    result = flow.snakemake("-n", check=False)
    output = result.stdout + result.stderr  # Snakemake prints the WorkflowError on stdout
    assert result.returncode != 0
    assert key in output, output
    if case == "checkpoint-bytes":
        assert "train.max_checkpoint_gb = 1000" in output
    assert not (tmp_path / "results").exists()
