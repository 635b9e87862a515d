"""What a config will cost, before it runs: per run, the passes each stage takes and the disk.

    nwt plan configs/paper-cifar10-resnet18.yaml
    nwt plan config.yaml --schema workflow/schemas/config.schema.yaml

The cost model of docs/cluster.md ("What each stage costs"), counted: training takes
T = epochs x floor(N / B) minibatch passes (forward and backward); the measure stage, at each of
the K - 1 measured checkpoints, 1 (the train batch) +
`samples` + `random_labels` + `fixed_batches` minibatch gradients, and at every
`full_batch_every`-th (and the first and last measured) a pass over the N training examples, N / B
minibatch-equivalents; dense replay, T more. A trajectory holds K checkpoints of 4 (P + Q + S) bytes
(parameters, buffers, optimizer state, in float32). N comes from the task where it is embedded, from
the examples `data_dir` holds where they can be counted by listing (ImageNet's folders), else from
the official release's size (column `examples_from` says which); `shards` is each minibatch's
replica batches (train.processes x batch_shards); P, Q and S are counted without building the model
(config/sizes.py, as the config checks count them), except for a run naming code of its own, whose
model is built.
"""

from __future__ import annotations

import math

import pandas as pd

from nowrongturns.config import sizes
from nowrongturns.config.factories import is_factory


def built_trajectory(run: dict) -> dict[str, int]:
    """sizes.planned_trajectory of a run naming code of its own (a factory, a timm model, whose
    sizes are known only once built): its task loaded and its model and optimizer built."""
    from nowrongturns.models import build_model
    from nowrongturns.optim.optimizers import build_optimizer
    from nowrongturns.optim.state import state_size
    from nowrongturns.tasks.load import load_task

    task = load_task(run)
    model = build_model(run, task)
    params = sum(p.numel() for p in model.parameters())
    values = params + sum(b.numel() for b in model.buffers())
    values += state_size(build_optimizer(run, model), run["optimizer"])
    return sizes.trajectory_sizes(run, task.train_size, params, values)


def plan_run(run: dict, measure: dict, processes: int = 1) -> dict:
    from nowrongturns.measure.gradients import Sources

    own_code = run["model"] not in sizes.MODELS or is_factory(run["task"])
    planned = built_trajectory(run) if own_code else sizes.planned_trajectory(run)
    counted_from = "task" if own_code else sizes.task_facts(run).counted_from
    examples, steps, batch = planned["examples"], planned["steps"], run["batch_size"]
    measured = planned["checkpoints"] - 1
    per_checkpoint = 1 + measure["samples"] + measure["random_labels"] + measure["fixed_batches"]
    sources = Sources(
        measure["samples"], measure["full_batch"], full_batch_every=measure["full_batch_every"]
    )
    full = sum(sources.full_batch_at(index, measured) for index in range(measured))
    measure_passes = measured * per_checkpoint + full * examples / batch
    return {
        "examples": examples,
        "examples_from": counted_from,
        "shards": processes * run["batch_shards"],
        "steps": steps,
        "checkpoints": planned["checkpoints"],
        "train_passes": steps,
        "minibatch_gradients": measured * per_checkpoint,
        "full_batch_passes": full,
        "measure_passes": measure_passes,
        "measure/train": measure_passes / steps if steps else math.nan,
        "replay_passes": steps if measure["dense"] else 0,
        "parameters": planned["parameters"],
        "checkpoint_gb": planned["checkpoint_bytes"] / 1e9,
    }


def plan(config: dict) -> pd.DataFrame:
    """One row per run of a validated config (the closed loop's retrainings included)."""
    from nowrongturns.config import expand_runs

    runs = expand_runs(config)
    processes = config["train"]["processes"]
    rows = {name: plan_run(run, config["measure"], processes) for name, run in runs.items()}
    if config["schedule"]["retrain"]:
        for loop in ("derived", "cosine"):  # trained, not measured
            rows[f"base--{loop}"] = {
                **rows["base"],
                "minibatch_gradients": 0,
                "full_batch_passes": 0,
                "measure_passes": 0.0,
                "measure/train": 0.0,
                "replay_passes": 0,
            }
    return pd.DataFrame.from_dict(rows, orient="index")


def print_plan(config_path: str, schema_path: str) -> pd.DataFrame:
    from nowrongturns.config import load_config, validate_config

    table = plan(validate_config(load_config(config_path, "workflow config"), schema_path))
    shown = table.copy()
    shown["measure/train"] = shown["measure/train"].map("{:.3f}".format)
    shown["measure_passes"] = shown["measure_passes"].map("{:.0f}".format)
    shown["checkpoint_gb"] = shown["checkpoint_gb"].map("{:.3g}".format)
    print(f"{config_path}: minibatch passes (forward + backward) and checkpoint disk per run")
    print(shown.to_string())
    total_train, total_measure = table["train_passes"].sum(), table["measure_passes"].sum()
    replay, disk = table["replay_passes"].sum(), table["checkpoint_gb"].sum()
    print(
        f"all runs: train {total_train} passes, measure {total_measure:.0f} "
        f"({total_measure / total_train:.3f} of training), replay {replay}, "
        f"checkpoints {disk:.3g} GB"
    )
    return table
