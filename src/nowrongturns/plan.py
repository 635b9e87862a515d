"""What a config will cost, before it runs: per run, the passes each stage takes and the disk.

    nwt plan configs/paper-cifar10-resnet18.yaml
    nwt plan config.yaml --schema workflow/schemas/config.schema.yaml

The README's cost model, counted: training takes T = epochs x floor(N / B) minibatch passes
(forward and backward); the measure stage, at each of the K - 1 measured checkpoints, 1 (the train
batch) + `samples` + `random_labels` + `fixed_batches` minibatch gradients, and at every
`full_batch_every`-th (and the first and last measured) a pass over the N training examples, N / B
minibatch-equivalents; dense replay, T more. A trajectory holds K checkpoints of 4 (P + Q + S)
bytes (parameters, buffers, optimizer state, in float32). N comes from the data where it is
embedded, from the official releases' sizes where it is on disk (TRAIN_EXAMPLES).
"""

from __future__ import annotations

import math
from types import SimpleNamespace

import pandas as pd

# Training examples of the tasks read from disk, as this package splits the official releases.
TRAIN_EXAMPLES = {
    "cifar10": 40_000,  # 80 % of the 50 000 training images
    "cifar100": 40_000,
    "imagenet": 1_281_167,  # ILSVRC-2012 train
    "wikitext2": 2_088_628 // 33,  # windows of 33 tokens of wiki.train.tokens
    # The 11 training areas, tiles of 256 every 64 pixels: about the reference's 10 000 windows.
    "vaihingen": 10_000,
}
# (kind, classes, input shape) of the tasks on disk, for counting their models' parameters.
SHAPES = {
    "cifar10": ("classification", 10, lambda run: (3, 32, 32)),
    "cifar100": ("classification", 100, lambda run: (3, 32, 32)),
    "imagenet": ("classification", 1000, lambda run: (3, 224, 224)),
    "wikitext2": ("language", 33_278, lambda run: (run["context"],)),
    "vaihingen": ("segmentation", 6, lambda run: (3, run["tile"], run["tile"])),
}


def task_facts(run: dict):
    """(training examples, a stand-in task with kind, classes and input shape)."""
    if run["task"] in TRAIN_EXAMPLES:
        kind, classes, shape = SHAPES[run["task"]]
        task = SimpleNamespace(kind=kind, num_classes=classes, input_shape=shape(run))
        return TRAIN_EXAMPLES[run["task"]], task
    from .data import load_task

    task = load_task(run)
    return task.train_size, task


def state_sizes(run: dict, task) -> tuple[int, int, int]:
    """(parameters, buffer values, optimizer state values) of a run's model, built on the meta
    device: no memory, no init."""
    import torch

    from .models import build_model
    from .optim import build_optimizer
    from .optimizer_state import state_size

    with torch.device("meta"):
        model = build_model(run, task)
        optimizer = build_optimizer(run, model)
        return (
            sum(p.numel() for p in model.parameters()),
            sum(b.numel() for b in model.buffers()),
            state_size(optimizer, run["optimizer"]),
        )


def plan_run(run: dict, measure: dict) -> dict:
    from .geometry import Sources
    from .train import checkpoint_steps

    examples, task = task_facts(run)
    batch = run["batch_size"]
    steps = run["epochs"] * (examples // batch)
    checkpoints = len(checkpoint_steps(steps, **run["checkpoint"]))
    measured = checkpoints - 1
    per_checkpoint = 1 + measure["samples"] + measure["random_labels"] + measure["fixed_batches"]
    sources = Sources(measure["samples"], measure["full_batch"],
                      full_batch_every=measure["full_batch_every"])  # fmt: skip
    full = sum(sources.full_batch_at(index, measured) for index in range(measured))
    measure_passes = measured * per_checkpoint + full * examples / batch
    params, buffers, optimizer = state_sizes(run, task)
    return {
        "examples": examples,
        "steps": steps,
        "checkpoints": checkpoints,
        "train_passes": steps,
        "minibatch_gradients": measured * per_checkpoint,
        "full_batch_passes": full,
        "measure_passes": measure_passes,
        "measure/train": measure_passes / steps if steps else math.nan,
        "replay_passes": steps if measure["dense"] else 0,
        "parameters": params,
        "checkpoint_gb": checkpoints * 4 * (params + buffers + optimizer) / 1e9,
    }


def plan(config: dict) -> pd.DataFrame:
    """One row per run of a validated config (the closed loop's retrainings included)."""
    from .config import expand_runs

    runs = expand_runs(config)
    rows = {name: plan_run(run, config["measure"]) for name, run in runs.items()}
    if config["schedule"]["retrain"]:
        for loop in ("derived", "cosine"):  # trained, not measured
            rows[f"base--{loop}"] = {**rows["base"], "minibatch_gradients": 0,
                                     "full_batch_passes": 0, "measure_passes": 0.0,
                                     "measure/train": 0.0, "replay_passes": 0}  # fmt: skip
    return pd.DataFrame.from_dict(rows, orient="index")


def print_plan(config_path: str, schema_path: str) -> pd.DataFrame:
    from .config import load_config, validate_config

    table = plan(validate_config(load_config(config_path, "workflow config"), schema_path))
    shown = table.copy()
    shown["measure/train"] = shown["measure/train"].map("{:.3f}".format)
    shown["measure_passes"] = shown["measure_passes"].map("{:.0f}".format)
    shown["checkpoint_gb"] = shown["checkpoint_gb"].map("{:.3g}".format)
    print(f"{config_path}: minibatch passes (forward + backward) and checkpoint disk per run")
    print(shown.to_string())
    total_train, total_measure = table["train_passes"].sum(), table["measure_passes"].sum()
    replay, disk = table["replay_passes"].sum(), table["checkpoint_gb"].sum()
    print(f"all runs: train {total_train} passes, measure {total_measure:.0f} "
          f"({total_measure / total_train:.3f} of training), replay {replay}, "
          f"checkpoints {disk:.3g} GB")
    return table
