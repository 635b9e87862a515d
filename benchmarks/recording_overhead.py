"""Training time with the trajectory recorded / the same training without: the train stage,
and a user's own loop with nowrongturns.Recorder around it.

    python benchmarks/recording_overhead.py                   # every case below
    python benchmarks/recording_overhead.py --cases digits --repeats 11

Both sides train the same model on the same minibatches with the same optimizer and schedule;
"without" is the bare loop (forward, backward, step). "With" is `nwt train` writing the
trajectory at the default cadence (the train stage), or the same bare loop with the public
recorder told each step's loss and minibatch indices, checkpointing at the same cadence (a
user's loop). Each side runs `--repeats` times, the pairs in alternating order. Printed: the
ratio of the best wall times, the median ratio of the pairs, and the same for CPU time (all
threads of the process, so the background checkpoint writes count in full); beside them, the
same ratios of a third, control run of the bare loop against the bare loop, which show how far
this machine's noise alone moves them. The CI-class VM is shared: single timings of one run
wander by 10 to 30 %, hence 21 pairs.
"""

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch

import nowrongturns
from nowrongturns.config import expand_runs, validate_config
from nowrongturns.models import build_model
from nowrongturns.optim.learning_rates import lr_schedule
from nowrongturns.optim.optimizers import build_optimizer
from nowrongturns.step import forward_backward, minibatches
from nowrongturns.tasks.load import load_task
from nowrongturns.train.stage import evaluate, train

SCHEMA = Path(__file__).resolve().parents[1] / "workflow/schemas/config.schema.yaml"
# (what records, the run's changes from the default): "train" is the train stage, "loop" a
# user's loop through nowrongturns.Recorder.
CASES = {
    "digits cnn (the default base run)": ("train", {}),
    "digits cnn, a user's loop with nowrongturns.Recorder": ("loop", {}),
    # CIFAR-sized inputs without the dataset: mnist5k images padded to 32x32 would change the task,
    # so the ResNet runs on mnist5k itself, 28x28.
    "mnist5k resnet-20": (
        "train",
        {
            "task": "mnist5k",
            "model": "resnet",
            "width": 16,
            "depth": 3,
            "epochs": 1,
            "batch_size": 128,
        },
    ),
}


def bare_training(run: dict, recorded_to: Path | None = None) -> None:
    """The training loop of the train stage without anything recorded; or, `recorded_to` a
    path, as a user's loop with nowrongturns.Recorder writing there."""
    task = load_task(run)
    torch.manual_seed(run["seed"])
    model = build_model(run, task).train()
    optimizer = build_optimizer(run, model)
    total_steps = run["epochs"] * (task.train_size // run["batch_size"])
    lrs = lr_schedule(run, total_steps)
    recorder = None
    if recorded_to is not None:
        recorder = nowrongturns.Recorder(
            recorded_to,
            model,
            optimizer,
            run=run,
            checkpoint={key: run["checkpoint"][key] for key in ("dense_first", "every")},
        )
    for step, indices in minibatches(
        run["seed"], task.train_size, run["batch_size"], 0, total_steps
    ):
        loss = forward_backward(model, optimizer, task, indices, lrs[step], step)
        optimizer.step()
        if recorder is not None:
            recorder.step(loss=loss, indices=indices)
    if recorder is not None:
        recorder.close()
    evaluate(model, task)  # the train stage ends so too, recording or not


def timed(function, *args) -> tuple[float, float]:
    """(wall seconds, process CPU seconds) of one call."""
    wall, cpu = time.perf_counter(), time.process_time()
    function(*args)
    return time.perf_counter() - wall, time.process_time() - cpu


def ratios(recorded: list[float], bare: list[float]) -> str:
    paired = statistics.median(r / b for r, b in zip(recorded, bare))
    return f"best {min(recorded) / min(bare):.3f}, median of pairs {paired:.3f}"


def timed_pairs(recording: str, run: dict, repeats: int) -> tuple[list, list, list]:
    """(with recording, without, control) timings of `repeats` pairs in alternating order
    (ABBA...), so that a drift of the machine's speed within a pair favours neither side; the
    control times the bare loop again, against itself: this machine's noise floor."""
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / "trajectory.h5"
        load_task(run)  # the data loads once, outside the timings (both sides load it)

        def with_recording():
            out.unlink(missing_ok=True)
            if recording == "train":
                train(run, out, "cpu")
            else:
                bare_training(run, out)

        with_recording()  # warm: the first run of a process pays for lazy imports
        recorded, bare, control = [], [], []
        for repeat in range(repeats):
            sides = [(recorded, with_recording), (bare, lambda: bare_training(run))]
            for times, function in sides[:: 1 if repeat % 2 == 0 else -1]:
                times.append(timed(function))
            control.append(timed(bare_training, run))
    return recorded, bare, control


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=21)
    parser.add_argument("--threads", type=int, default=1, help="as the workflow's default")
    parser.add_argument(
        "--cases", default="", help="only the cases whose name contains this (digits, resnet)"
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} thread(s), {args.repeats} pairs")
    for name, (recording, changes) in CASES.items():
        if args.cases not in name:
            continue
        run = expand_runs(validate_config({"base": changes}, SCHEMA))["base"]
        recorded, bare, control = timed_pairs(recording, run, args.repeats)
        for clock, column in (("wall", 0), ("cpu", 1)):
            with_recording = [times[column] for times in recorded]
            without = [times[column] for times in bare]
            print(
                f"{name}, {clock} time: with recording {min(with_recording):.2f} s, "
                f"without {min(without):.2f} s; with / without: "
                f"{ratios(with_recording, without)}; the bare loop against itself: "
                f"{ratios([times[column] for times in control], without)}"
            )


if __name__ == "__main__":
    main()
