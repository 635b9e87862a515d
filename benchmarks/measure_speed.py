"""Speed of the measure stage and of dense mode, against raw compute and the reference approach.

    python benchmarks/measure_speed.py      # every CPU case below, 3 repeats each
    python benchmarks/measure_speed.py --device cuda --cases resnet18-cifar digits
    python benchmarks/measure_speed.py --cases paper-sources   # (d), (e): every source on

Three ratios per case, all measured in this one run:

(a) measure-stage throughput / raw forward+backward throughput (goal >= 0.90): `nwt measure`
    (train batch + `--samples` sampled minibatches per checkpoint, nothing else) on a trajectory
    trained beforehand, against a bare loop that reads the same checkpoints the same way and runs
    forward and backward, with no statistics, on exactly the same minibatches at the same weights.
(b) per-checkpoint geometry, ours / the reference (goal <= 0.55): `nwt train` + `nwt measure`,
    against `reference_two_pass.two_pass_checkpoints` (train to learn w*, train again logging the
    same gradients at the same steps, one host sync per logged value).
(c) dense mode, ours / the reference (goal <= 1.05): `nwt train` + `nwt replay` of every replay
    job the workflow plans (segments cut into jobs of at least `measure.dense_job_steps` steps,
    its default unless `--job-steps`), one after the other (the total compute, not the wall time
    of parallel jobs), against `reference_two_pass.two_pass_dense`.

`digits-layers` and `resnet-layers` measure (f): the measure stage of that case with gamma per
layer on (`measure.layers`) against raw forward+backward throughput (goal >= 0.95), and against
itself with layers off; the three timings interleaved, reversed every other repeat.

`paper-sources` measures two more, with every source on as the paper presets have them (8 sampled
and 10 fixed minibatches, the train batch, its shuffled labels and update at every checkpoint, the
full batch at every 2nd), at their cadence in steps (a checkpoint every 156): (d) measure / train
wall time (goal <= 0.5) and (e) measure-stage throughput / raw forward+backward throughput of the
very same gradients (goal >= 0.95).

Each repeat trains one trajectory (timed: it is part of (b) and (c)), then runs the other five
timings on it, in reverse order every other repeat. Printed: the ratio of the best times, the
median ratio of the interleaved pairs, and the median ratio of CPU time (all threads, so the
prefetching and background-writing threads count in full). After the first repeat, outside the
timings, it checks that the two approaches produced the same numbers. On the 2-core VM the
default run takes about 15 minutes; `--cases digits` alone about 3.
"""

import argparse
import functools
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from fake_cifar10 import write_cifar10
from reference_two_pass import two_pass_checkpoints, two_pass_dense

from nowrongturns.config import expand_runs, validate_config
from nowrongturns.measure.gradients import Sources, checkpoint_requests, fixed_batches
from nowrongturns.measure.stage import measure
from nowrongturns.models import build_model
from nowrongturns.replay.segments import replay_jobs, segment_steps
from nowrongturns.replay.stage import replay_segments
from nowrongturns.step import SAMPLED, seeded_generator
from nowrongturns.tasks.load import load_task
from nowrongturns.tasks.pipeline import batches
from nowrongturns.train.stage import train
from nowrongturns.trajectory.reader import TrajectoryReader
from nowrongturns.trajectory.state import load_flat

SCHEMA = Path(__file__).resolve().parents[1] / "workflow/schemas/config.schema.yaml"
CASES = {
    "digits": ("digits cnn (the default base run)", {}),
    # Ratio (b) depends on how many gradients measurement takes per training step, K(s+1)/T: 1.08
    # at the default cadence, made for small runs; about 0.09 at the cadence of configs/paper-*.
    "digits-sparse": (
        "digits cnn, 100 epochs, checkpoints at 0-9, then every 200th (the first wave's presets)",
        {"epochs": 100, "checkpoint": {"dense_first": 10, "every": 200}},
    ),
    # ResNet-20 (depth 3) costs 0.7 s a gradient here: one repeat would take 6 minutes.
    "resnet": (
        "mnist5k resnet-8 (width 16, depth 1)",
        {
            "task": "mnist5k",
            "model": "resnet",
            "width": 16,
            "depth": 1,
            "epochs": 1,
            "batch_size": 128,
        },
    ),
}
# For a lent GPU (`--device cuda --cases resnet18-cifar`): random CIFAR-10-sized images in the
# real on-disk format (benchmarks/fake_cifar10.py), as no dataset can be downloaded there.
GPU_CASES = {
    "resnet18-cifar": (
        "cifar-10-sized random images, torchvision resnet-18, batch 128, one epoch",
        {"task": "cifar10", "model": "resnet18", "epochs": 1, "batch_size": 128},
    ),
}
# The measure stage of a preset, every source on as configs/paper-cifar10-resnet18.yaml has them,
# on the digits CNN at the preset's cadence in training steps: a checkpoint every 156 steps (an
# epoch of CIFAR at batch 256), 20 gradients each. A digits epoch is 22 steps, so a full batch
# costs 22 minibatches, not 156: at every 2nd checkpoint its share of training (0.07) is about the
# preset's (every 12th: 0.08). `nwt plan` gives this case 0.20, the preset's base run 0.23.
SOURCES_CASE = (
    "digits cnn, 200 epochs, the cadence and sources of the paper presets",
    {"epochs": 200, "checkpoint": {"dense_first": 10, "every": 156}},
    {
        "samples": 8,
        "full_batch": True,
        "random_labels": True,
        "update": True,
        "full_batch_every": 2,
        "fixed_batches": 10,
    },
)
# (f) gamma per layer on (measure.layers): the measure stage of these CASES against raw passes.
LAYERS_CASES = {"digits-layers": "digits", "resnet-layers": "resnet"}
GOALS = {
    "a": (">=", 0.90),
    "b": ("<=", 0.55),
    "c": ("<=", 1.05),
    "d": ("<=", 0.5),
    "e": (">=", 0.95),
    "f": (">=", 0.95),
}


def raw_forward_backward(trajectory: Path, samples: int, device: torch.device) -> None:
    """What the measure stage computes, without anything but the passes: each checkpoint but the
    last read and loaded as `measure` loads it, then forward and backward on the train batch and
    the `samples` sampled minibatches."""
    with TrajectoryReader(trajectory) as traj:
        run = traj.config
        task = load_task(run).to(device)
        model = build_model(run, task).to(device).train()
        params = list(model.parameters())
        for index, step in enumerate(traj.checkpoint_steps[:-1]):
            load_flat(model, traj.weights(index), traj.buffers(index))
            batch = torch.from_numpy(traj.batch_indices(step))
            sampler = seeded_generator(run["seed"], SAMPLED, step)
            sampled = [
                torch.randperm(task.train_size, generator=sampler)[: len(batch)]
                for _ in range(samples)
            ]
            for indices in [batch, *sampled]:
                for param in params:
                    param.grad = None
                inputs, targets = task.batch(indices)
                task.loss(model(inputs), targets).backward()


def raw_all_sources(trajectory: Path, sources: Sources, device: torch.device) -> None:
    """Forward and backward of every gradient the measure stage takes with `sources` (the same
    minibatches, fixed ones, full-batch chunks and shuffled labels), and nothing else."""
    with TrajectoryReader(trajectory) as traj:
        run = traj.config
        task = load_task(run).to(device)
        model = build_model(run, task).to(device).train()
        params = list(model.parameters())
        steps = traj.checkpoint_steps[:-1]
        fixed = fixed_batches(
            run["seed"], task.train_size, run["batch_size"], sources.fixed_batches
        )
        for index, step in enumerate(steps.tolist()):
            load_flat(model, traj.weights(index), traj.buffers(index))
            batch = torch.from_numpy(traj.batch_indices(step))
            requests = checkpoint_requests(
                task,
                step,
                batch,
                run["seed"],
                sources,
                fixed,
                sources.full_batch_at(index, len(steps)),
            )
            fetched = list(batches(task, requests))
            shuffled = (fetched[0][0], fetched[0][1], fetched[0][2].roll(1))  # random labels
            for param in params:
                param.grad = None
            for (source, weight), inputs, targets in [*fetched, shuffled]:
                if source != "full_batch":
                    for param in params:
                        param.grad = None
                loss = task.loss(model(inputs), targets)
                (loss * weight if source == "full_batch" else loss).backward()


def run_sources_case(run: dict, settings: dict, repeats: int, device: torch.device) -> None:
    sources = Sources(**settings)
    times = {"train": [], "measure": [], "raw": []}
    with tempfile.TemporaryDirectory() as tmp:
        trajectory, out = Path(tmp) / "trajectory.h5", Path(tmp) / "geometry.parquet"
        stage = functools.partial(
            measure, str(trajectory), str(out), "base", device=device.type, **settings
        )
        for repeat in range(repeats):
            trajectory.unlink(missing_ok=True)
            times["train"].append(timed(train, run, trajectory, device.type))
            order = [("measure", stage), ("raw", raw_all_sources, trajectory, sources, device)]
            for key, function, *args in order[:: -1 if repeat % 2 else 1]:
                times[key].append(timed(function, *args))
        counts = pd.read_parquet(out)["source"].value_counts().to_dict()
    # [wall times, CPU times] of each repeat, as ratio_line takes them
    clocks = {key: [[t[0] for t in ts], [t[1] for t in ts]] for key, ts in times.items()}
    best = {key: min(walls) for key, (walls, _) in clocks.items()}
    print(f"{SOURCES_CASE[0]}: rows per source {counts}")
    print(
        f"  best wall seconds: train {best['train']:.2f}, measure {best['measure']:.2f}, "
        f"raw forward+backward of the same gradients {best['raw']:.2f}"
    )
    print(ratio_line("measure / train", "d", clocks["measure"], clocks["train"]))
    print(ratio_line("measure / raw throughput", "e", clocks["raw"], clocks["measure"]))


def measure_stage(
    trajectory: Path, out: Path, samples: int, device: str, layers: Path | None = None
) -> pd.DataFrame:
    return measure(
        str(trajectory),
        str(out),
        "base",
        samples,
        full_batch=False,
        random_labels=False,
        update=False,
        device=device,
        layers=str(layers) if layers else None,
    )


def run_layers_case(name: str, run: dict, repeats: int, samples: int, device) -> None:
    """(f): the measure stage with gamma per layer on (measure.layers), against the bare passes
    and against itself with layers off; one trajectory, the three timings interleaved."""
    load_task(run)
    clocks = {key: [[], []] for key in ("layers", "plain", "raw")}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        trajectory = folder / "trajectory.h5"
        train(run, trajectory, device.type)
        order = [
            (
                "layers",
                measure_stage,
                trajectory,
                folder / "g.parquet",
                samples,
                device.type,
                folder / "layers.parquet",
            ),
            ("plain", measure_stage, trajectory, folder / "g.parquet", samples, device.type),
            ("raw", raw_forward_backward, trajectory, samples, device),
        ]
        for repeat in range(repeats):
            for key, function, *args in order[:: -1 if repeat % 2 else 1]:
                wall, cpu, _ = timed(function, *args)
                clocks[key][0].append(wall)
                clocks[key][1].append(cpu)
        layer_rows = len(pd.read_parquet(folder / "layers.parquet"))
        tensors = pd.read_parquet(folder / "layers.parquet")["layer"].nunique()
    best = {key: min(values[0]) for key, values in clocks.items()}
    print(f"{name}, measure.layers on: {tensors} parameter tensors, {layer_rows} layer rows")
    print(
        f"  best wall seconds: measure with layers {best['layers']:.2f}, without "
        f"{best['plain']:.2f}, raw forward+backward {best['raw']:.2f}"
    )
    print(ratio_line("measure with layers / raw throughput", "f", clocks["raw"], clocks["layers"]))
    print(ratio_line("with layers / without, throughput", "f", clocks["plain"], clocks["layers"]))


def replay_all(trajectory: Path, folder: Path, job_steps: int, device: str) -> pd.DataFrame:
    """Every replay job the workflow plans, one after the other."""
    jobs = replay_jobs(segment_steps(str(trajectory)), job_steps)
    parts = [
        replay_segments(
            str(trajectory), first, last, str(folder / f"{first}-{last}.parquet"), "base", device
        )
        for first, last in jobs
    ]
    return pd.concat(parts, ignore_index=True)


def timed(function, *args) -> tuple[float, float, object]:
    """(wall seconds, process CPU seconds, result) of one call, its GPU work finished."""
    wall, cpu = time.perf_counter(), time.process_time()
    result = function(*args)
    if torch.cuda.is_initialized():
        torch.cuda.synchronize()
    return time.perf_counter() - wall, time.process_time() - cpu, result


def check_same_numbers(ours: pd.DataFrame, reference: pd.DataFrame, keys: list[str]) -> float:
    """Largest difference of RSI, EB and gamma between the two approaches' rows, in units of the
    row's EB for RSI and EB, of a cosine for gamma. The bar (1 %) catches another minibatch or
    other weights, not rounding: the reference's float32 norms are off by up to about 1e-3
    (torch's float32 norm of 11M random terms on this CPU: 6e-4 relative), ours are float64."""
    merged = ours.merge(reference, on=keys, suffixes=("", "_ref"), validate="one_to_one")
    if len(merged) != len(ours) or len(merged) != len(reference):
        raise RuntimeError(f"the rows differ: {len(ours)} ours, {len(reference)} reference")
    units = {"rsi": merged["eb"], "eb": merged["eb"], "gamma": 1.0}
    worst = max(
        float(np.max(np.abs(merged[column] - merged[f"{column}_ref"]) / unit))
        for column, unit in units.items()
    )
    if worst > 1e-2:
        raise RuntimeError(f"the two approaches disagree: a difference of {worst:.2g}")
    return worst


def ratio_line(label: str, goal: str, ours: list[list[float]], theirs: list[list[float]]) -> str:
    """`ours` and `theirs`: [wall times, CPU times] per repeat; ours may be a sum of parts."""
    (ours_wall, ours_cpu), (theirs_wall, theirs_cpu) = ours, theirs
    best = min(ours_wall) / min(theirs_wall)
    paired = statistics.median(o / t for o, t in zip(ours_wall, theirs_wall))
    paired_cpu = statistics.median(o / t for o, t in zip(ours_cpu, theirs_cpu))
    sign, target = GOALS[goal]
    met = [value <= target if sign == "<=" else value >= target for value in (best, paired)]
    verdict = "met" if all(met) else "MISSED" if not any(met) else "met by one of the two"
    return (
        f"  ({goal}) {label}: best {best:.3f}, median of pairs {paired:.3f}, "
        f"CPU time median of pairs {paired_cpu:.3f}; goal {sign} {target:.2f}: {verdict}"
    )


def run_case(
    name: str, run: dict, repeats: int, samples: int, job_steps: int, device: torch.device
) -> None:
    load_task(run)  # the data loads once, outside the timings
    times = {key: [] for key in ("train", "measure", "raw", "replay", "ref_ckpt", "ref_dense")}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        trajectory = folder / "trajectory.h5"
        for repeat in range(repeats):
            trajectory.unlink(missing_ok=True)
            times["train"].append(timed(train, run, trajectory, device.type))
            order = [
                (
                    "measure",
                    measure_stage,
                    trajectory,
                    folder / "geometry.parquet",
                    samples,
                    device.type,
                ),
                ("raw", raw_forward_backward, trajectory, samples, device),
                ("replay", replay_all, trajectory, folder, job_steps, device.type),
                ("ref_ckpt", two_pass_checkpoints, run, samples, device.type),
                ("ref_dense", two_pass_dense, run, device.type),
            ]
            for key, function, *args in order[:: -1 if repeat % 2 else 1]:
                times[key].append(timed(function, *args))
            if repeat == 0:
                results = {key: values[0][2] for key, values in times.items()}
                geometry = check_same_numbers(
                    results["measure"], results["ref_ckpt"], ["step", "source", "sample"]
                )
                dense = check_same_numbers(results["replay"], results["ref_dense"], ["step"])
                with TrajectoryReader(trajectory) as traj:
                    total_steps = traj.total_steps
                    measured = len(traj.checkpoint_steps) - 1
                jobs = len(replay_jobs(segment_steps(str(trajectory)), job_steps))
    walls = {key: [t[0] for t in values] for key, values in times.items()}
    cpus = {key: [t[1] for t in values] for key, values in times.items()}

    def summed(*keys):
        return [[sum(parts) for parts in zip(*(clock[k] for k in keys))] for clock in (walls, cpus)]

    def alone(key):
        return [walls[key], cpus[key]]

    gradients = measured * (samples + 1)
    floor = (total_steps + gradients) / (2 * total_steps + measured * samples)
    best = {key: min(values) for key, values in walls.items()}
    print(
        f"{name}: {total_steps} steps, {measured} measured checkpoints x {samples + 1} "
        f"minibatches = {gradients} gradients"
    )
    print(
        f"  best wall seconds: train {best['train']:.2f}, measure {best['measure']:.2f}, "
        f"raw forward+backward {best['raw']:.2f}, replay of every segment "
        f"({jobs} jobs of at least {job_steps} steps) {best['replay']:.2f}; "
        f"reference two-pass per checkpoint {best['ref_ckpt']:.2f}, dense {best['ref_dense']:.2f}"
    )
    print(
        f"  throughput: measure {gradients / best['measure']:.1f} gradients/s, "
        f"raw {gradients / best['raw']:.1f} gradients/s"
    )
    print(
        f"  the two approaches agree: RSI, EB, gamma within {geometry:.1g} (per checkpoint), "
        f"{dense:.1g} (dense), in units of EB and of a cosine"
    )
    print(ratio_line("measure / raw throughput", "a", alone("raw"), alone("measure")))
    print(
        ratio_line("train + measure / two-pass", "b", summed("train", "measure"), alone("ref_ckpt"))
    )
    print(
        f"      (gradient count alone: (T + K(s+1)) / (2T + Ks) = "
        f"({total_steps} + {gradients}) / ({2 * total_steps} + {measured * samples}) = {floor:.3f})"
    )
    print(
        ratio_line(
            "train + replay / two-pass dense", "c", summed("train", "replay"), alone("ref_dense")
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1, help="as the workflow's default")
    parser.add_argument("--samples", type=int, default=8, help="sampled minibatches a checkpoint")
    parser.add_argument(
        "--cases",
        nargs="+",
        choices=[*CASES, *GPU_CASES, "paper-sources", *LAYERS_CASES],
        default=list(CASES),
    )
    parser.add_argument("--job-steps", type=int, help="default: config measure.dense_job_steps")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--cifar-train", type=int, default=50000, help="random CIFAR images")
    parser.add_argument("--cifar-test", type=int, default=10000, help="the same, to validate on")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    print(
        f"torch {torch.__version__}, {args.device}, {args.threads} thread(s), "
        f"{args.repeats} repeats"
    )
    with tempfile.TemporaryDirectory() as data:
        for case in args.cases:
            if case in LAYERS_CASES:
                name, changes = CASES[LAYERS_CASES[case]]
                run = expand_runs(validate_config({"base": changes}, SCHEMA))["base"]
                run_layers_case(name, run, args.repeats, args.samples, device)
                continue
            if case == "paper-sources":
                _, changes, settings = SOURCES_CASE
                run = expand_runs(validate_config({"base": changes}, SCHEMA))["base"]
                run_sources_case(run, settings, args.repeats, device)
                continue
            name, changes = {**CASES, **GPU_CASES}[case]
            config = {"base": changes}
            if changes.get("task") == "cifar10":
                write_cifar10(data, args.cifar_train, args.cifar_test, np.random.default_rng(0))
                config["data"] = {"cifar10": data}
            config = validate_config(config, SCHEMA)
            job_steps = args.job_steps or config["measure"]["dense_job_steps"]
            run = expand_runs(config)["base"]
            run_case(name, run, args.repeats, args.samples, job_steps, device)


if __name__ == "__main__":
    main()
