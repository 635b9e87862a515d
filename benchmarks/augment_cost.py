"""What `augment: standard` costs a training step, on in-memory images (goal: at most 5 %).

    python benchmarks/augment_cost.py --repeats 7

The CIFAR ResNet-8 case (model `resnet`, width 16, depth 1; batch 128) on random images in the
real CIFAR-10 format (benchmarks/fake_cifar10.py): the same training steps (minibatch, forward,
backward, optimizer step) with `augment: none` and `augment: standard` (a random crop of padding
4, batched on the device), interleaved, in reverse order every other repeat. Printed: the time of
a step each way (best of the repeats and the median of the pairs' ratios), and, measured alone,
what building a minibatch costs each way.
"""

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from fake_cifar10 import write_cifar10

from nowrongturns.config import expand_runs, validate_config
from nowrongturns.models import build_model
from nowrongturns.optim.optimizers import build_optimizer
from nowrongturns.step import forward_backward, minibatches
from nowrongturns.tasks.load import load_task

SCHEMA = Path(__file__).resolve().parents[1] / "workflow/schemas/config.schema.yaml"
RESNET8 = {"task": "cifar10", "model": "resnet", "width": 16, "depth": 1, "batch_size": 128}


def run_config(data_dir: str, augment: str) -> dict:
    config = {"base": {**RESNET8, "augment": augment}, "data": {"cifar10": data_dir}}
    return expand_runs(validate_config(config, SCHEMA))["base"]


def time_steps(run: dict, steps: int) -> float:
    """Seconds per training step over `steps` steps (after one warm-up step)."""
    task = load_task(run)
    torch.manual_seed(0)
    model = build_model(run, task).train()
    optimizer = build_optimizer(run, model)
    batches = list(minibatches(run["seed"], task.train_size, run["batch_size"], 0, steps + 1))
    started = None
    for step, indices in batches:
        if step == 1:
            started = time.perf_counter()
        forward_backward(model, optimizer, task, indices, run["lr"], step)
        optimizer.step()
    return (time.perf_counter() - started) / steps


def time_batches(run: dict, count: int) -> float:
    """Seconds to build one minibatch (index, augment, standardize), averaged over `count`."""
    from nowrongturns.step import AUGMENT_TRAIN
    from nowrongturns.tasks.augment import Draw

    task = load_task(run)
    batches = list(minibatches(run["seed"], task.train_size, run["batch_size"], 0, count))
    started = time.perf_counter()
    for step, indices in batches:
        task.batch(indices, draw=Draw(AUGMENT_TRAIN, (step,)))
    return (time.perf_counter() - started) / count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--steps", type=int, default=30, help="timed training steps a repeat")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as folder:
        write_cifar10(Path(folder), train=5000, test=10, rng=np.random.default_rng(0))
        runs = {augment: run_config(folder, augment) for augment in ("none", "standard")}
        times = {"none": [], "standard": []}
        for repeat in range(args.repeats):
            order = ["none", "standard"] if repeat % 2 == 0 else ["standard", "none"]
            for augment in order:
                times[augment].append(time_steps(runs[augment], args.steps))
        batch_cost = {augment: time_batches(run, 200) for augment, run in runs.items()}
    ratios = [with_ / without for with_, without in zip(times["standard"], times["none"])]
    best = min(times["standard"]) / min(times["none"])
    print(
        f"CIFAR ResNet-8, batch 128, {args.steps} steps x {args.repeats} repeats, "
        f"{args.threads} thread(s), torch {torch.__version__}"
    )
    print(f"step, augment none:     {min(times['none']) * 1e3:7.2f} ms (best)")
    print(f"step, augment standard: {min(times['standard']) * 1e3:7.2f} ms (best)")
    print(
        f"step time, standard / none: best {best:.3f}, median of pairs "
        f"{statistics.median(ratios):.3f} (goal <= 1.05)"
    )
    extra = batch_cost["standard"] - batch_cost["none"]
    print(
        f"building a minibatch: none {batch_cost['none'] * 1e3:.3f} ms, standard "
        f"{batch_cost['standard'] * 1e3:.3f} ms; the crop alone is "
        f"{extra / min(times['none']):.2%} of a step"
    )


if __name__ == "__main__":
    main()
