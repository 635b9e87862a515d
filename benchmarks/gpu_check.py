"""The GPU check: what only a GPU can show, in one run of at most 8 minutes on one H100/H200.

    python benchmarks/gpu_check.py --device cuda          # on a lent GPU (benchmarks/README.md)
    python benchmarks/gpu_check.py --device cpu --tiny    # the code path, at a toy size (a test)

It makes its own data (random images in the real CIFAR-10 and ImageFolder formats) and prints:
1. bit identity of two trainings and of two measure runs of the digits CNN;
2. dense replay's largest relative error at a segment's end (1e-5 is the bar);
3. measure-stage throughput over raw forward+backward throughput, torchvision ResNet-18 at batch
   128 on CIFAR-sized images;
4. training throughput in fp32, tf32 and bf16, and the differences of RSI, EB and gamma that
   measuring the same checkpoints in tf32 and bf16 causes against strict fp32;
5. loader images/s on 500 x 375 JPEGs with RandomResizedCrop, against what a ResNet-50 consumes;
6. the sharpness analysis' Hessian-vector products of a BatchNorm ResNet-20 at batch 128: GPU
   memory and time against a training step's, with the graphs' saved tensors on the GPU and in
   host memory (benchmarks/sharpness_memory.py).
Never a test dependency: the tests run it at --tiny on the CPU.
"""

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from fake_cifar10 import write_cifar10
from input_pipeline import write_imagenet
from measure_speed import measure_stage, raw_forward_backward
from sharpness_memory import measure_side

from nowrongturns.config import expand_runs, validate_config
from nowrongturns.measure.stage import measure
from nowrongturns.models import build_model
from nowrongturns.optim.optimizers import build_optimizer
from nowrongturns.precision import PRECISIONS, apply_precision, autocast, uses_channels_last
from nowrongturns.replay.segments import replay_jobs, segment_steps
from nowrongturns.replay.stage import replay_segments
from nowrongturns.step import AUGMENT_TRAIN
from nowrongturns.tasks.augment import Draw
from nowrongturns.tasks.load import load_task
from nowrongturns.tasks.pipeline import Request, batches
from nowrongturns.train.stage import train

SCHEMA = Path(__file__).resolve().parents[1] / "workflow/schemas/config.schema.yaml"


def run_config(base: dict, data: dict | None = None) -> dict:
    return expand_runs(validate_config({"base": base, "data": data or {}}, SCHEMA))["base"]


def synced(function, *args, **kwargs):
    """(seconds, result) of a call whose GPU work has finished."""
    started = time.perf_counter()
    result = function(*args, **kwargs)
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return time.perf_counter() - started, result


def identity(folder: Path, device: str, tiny: bool) -> None:
    run = run_config({"epochs": 1 if tiny else 5})
    paths = [folder / f"cnn-{i}.h5" for i in range(2)]
    tables = []
    for path in paths:
        train(run, path, device=device)
        tables.append(
            measure(
                path,
                path.with_suffix(".parquet"),
                "cnn",
                samples=2,
                full_batch=True,
                random_labels=True,
                device=device,
            )
        )
    import h5py

    with h5py.File(paths[0]) as a, h5py.File(paths[1]) as b:
        weights = [f["checkpoints/weights"][:] for f in (a, b)]
        same_training = np.array_equal(*weights)
        worst = float(np.max(np.abs(weights[0].astype(np.float64) - weights[1])))
    same_tables = tables[0].equals(tables[1])
    print(
        f"1. two trainings bit-identical: {same_training} (largest weight difference "
        f"{worst:.3g}); two measure runs identical: {same_tables}"
    )
    errors = []
    for first, last in replay_jobs(segment_steps(paths[0]), 1000):
        out = folder / f"replay-{first}-{last}.parquet"
        errors += replay_segments(paths[0], first, last, out, "cnn", device=device).attrs[
            "end_errors"
        ]
    print(
        f"2. dense replay: largest relative error at a segment's end {max(errors):.3g} over "
        f"{len(errors)} segments (bar 1e-5)"
    )


def measure_throughput(folder: Path, device: str, tiny: bool) -> None:
    cifar = folder / "cifar10"
    write_cifar10(cifar, train=320 if tiny else 10000, test=10, rng=np.random.default_rng(0))
    base = {
        "task": "cifar10",
        "model": "resnet18",
        "batch_size": 128,
        "epochs": 1,
        "width_multiplier": 0.125 if tiny else 1,
        "checkpoint": {"dense_first": 2, "every": 10},
    }
    run = run_config(base, {"cifar10": str(cifar)})
    trajectory = folder / "resnet18.h5"
    train(run, trajectory, device=device)
    ratios = []
    for _ in range(1 if tiny else 3):
        measured, _ = synced(measure_stage, trajectory, folder / "m.parquet", 8, device)
        raw, _ = synced(raw_forward_backward, trajectory, 8, torch.device(device))
        ratios.append(raw / measured)
    print(
        f"3. measure / raw forward+backward throughput, ResNet-18 batch 128: best "
        f"{max(ratios):.3f}, median {statistics.median(ratios):.3f} (goal >= 0.90)"
    )
    return run, trajectory


def precisions(folder: Path, device: str, tiny: bool, run: dict, trajectory: Path) -> None:
    # 5 epochs (310 steps): one epoch's 62 steps took about 1.5 s on an H200, mostly fixed costs.
    longer = {**run, "epochs": 1 if tiny else 5}
    steps = {}
    for precision in PRECISIONS:
        seconds, _ = synced(
            train, longer, folder / f"{precision}.h5", device=device, precision=precision
        )
        steps[precision] = seconds
    line = ", ".join(f"{p} {steps['fp32'] / s:.2f}x" for p, s in steps.items())
    print(
        f"4. training speed against fp32 ({longer['epochs']} epoch(s) each, data on the device): "
        f"{line}"
    )
    strict = measure(
        trajectory,
        folder / "fp32.parquet",
        "r",
        samples=2,
        full_batch=False,
        random_labels=False,
        device=device,
    )
    for precision in PRECISIONS[1:]:
        other = measure(
            trajectory,
            folder / f"{precision}.parquet",
            "r",
            samples=2,
            full_batch=False,
            random_labels=False,
            device=device,
            precision=precision,
        )
        # (not "_other": the geometry table has a column gamma_other of its own)
        merged = strict.merge(other, on=["step", "source", "sample"], suffixes=("", "_low"))
        rsi = np.max(np.abs(merged["rsi"] - merged["rsi_low"]) / merged["eb"])
        eb = np.max(np.abs(merged["eb"] - merged["eb_low"]) / merged["eb"])
        gamma = np.max(np.abs(merged["gamma"] - merged["gamma_low"]))
        print(
            f"   measured in {precision} against fp32, same checkpoints: |d RSI| / EB "
            f"{rsi:.2g}, |d EB| / EB {eb:.2g}, |d gamma| {gamma:.2g}"
        )
    apply_precision("fp32")


def loader_against_model(folder: Path, device: str, tiny: bool) -> None:
    images = 64 if tiny else 1024
    root = folder / "imagenet"
    write_imagenet(root, images, np.random.default_rng(0))
    task = load_task(
        {"task": "imagenet", "data_dir": str(root), "augment": "standard", "seed": 0}
    ).to(device)
    order = torch.arange(images)
    requests = [Request(order[i : i + 64], Draw(AUGMENT_TRAIN, (i,))) for i in range(0, images, 64)]
    cores = os.cpu_count() or 1
    for workers in sorted({0, min(4, cores), min(cores - 1, 15)} if not tiny else {0, 1}):
        seconds, _ = synced(lambda w=workers: sum(1 for _ in batches(task, requests, w)))
        print(f"5. loader, {workers:2d} worker(s): {images / seconds:7.0f} images/s")
    model = (
        build_model({"model": "resnet50", "width_multiplier": 0.125 if tiny else 1}, task)
        .to(device)
        .train()
    )
    optimizer = build_optimizer(run_config({"model": "resnet50"}), model)
    inputs = torch.randn(8 if tiny else 128, 3, 224, 224, device=device)
    targets = torch.zeros(len(inputs), dtype=torch.long, device=device)

    def step(precision: str) -> None:
        optimizer.zero_grad()
        with autocast(precision, torch.device(device)):
            loss = task.loss(model(inputs), targets)
        loss.backward()
        optimizer.step()

    for precision in ("fp32", "bf16"):
        apply_precision(precision)
        # As the stages run it: NHWC where tensor cores take the convolutions.
        layout = (
            torch.channels_last
            if uses_channels_last(model, torch.device(device), precision)
            else torch.contiguous_format
        )
        model, inputs = model.to(memory_format=layout), inputs.to(memory_format=layout)
        rates = []
        for _ in range(2 if tiny else 6):
            seconds, _ = synced(step, precision)
            rates.append(len(inputs) / seconds)
        print(f"   ResNet-50 consumes {max(rates[1:] or rates):7.0f} images/s in {precision}")
    apply_precision("fp32")


def sharpness_products(device: str, tiny: bool) -> None:
    batch, examples = (16, 32) if tiny else (128, 512)
    step_mb, step_seconds = measure_side("resnet", "training step", batch, examples, device)
    for side in ("chunked product", "offloaded product"):
        megabytes, seconds = measure_side("resnet", side, batch, examples, device)
        # Memory only on a GPU: in one process, the CPU's resident memory only grows.
        memory = f"{megabytes / step_mb:.2f}x its memory, " if device == "cuda" else ""
        print(
            f"6. sharpness, {side} of ResNet-20 at batch {batch} against a training step: "
            f"{memory}{seconds / step_seconds:.1f}x its time"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    parser.add_argument("--tiny", action="store_true", help="toy sizes: the code path only")
    args = parser.parse_args()
    started = time.perf_counter()
    name = torch.cuda.get_device_name() if args.device == "cuda" else "cpu"
    print(f"GPU check on {name}, torch {torch.__version__}{', tiny' if args.tiny else ''}")
    pd.set_option("display.width", 120)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        identity(folder, args.device, args.tiny)
        run, trajectory = measure_throughput(folder, args.device, args.tiny)
        precisions(folder, args.device, args.tiny, run, trajectory)
        loader_against_model(folder, args.device, args.tiny)
    sharpness_products(args.device, args.tiny)
    print(f"done in {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
