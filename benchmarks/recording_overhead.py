"""Training time with the trajectory recorded (the train stage) / the same training without.

    python benchmarks/recording_overhead.py            # the CPU default and a CIFAR ResNet-20

Both sides train the same model on the same minibatches with the same optimizer and schedule;
"without" is the bare loop (forward, backward, step), "with" is `nwt train` writing the
trajectory at the default cadence. Each side runs `--repeats` times, interleaved. Printed: the
ratio of the best wall times, the median ratio of the interleaved pairs, and the same for CPU
time (all threads of the process, so the background checkpoint writes count in full). This
machine is a shared VM: single timings wander by +-10 %, hence the repeats.
"""

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch

from nowrongturns.config import expand_runs, validate_config
from nowrongturns.models import build_model
from nowrongturns.optim.learning_rates import lr_schedule
from nowrongturns.optim.optimizers import build_optimizer
from nowrongturns.step import forward_backward, minibatches
from nowrongturns.tasks.load import load_task
from nowrongturns.train.stage import evaluate, train

SCHEMA = Path(__file__).resolve().parents[1] / "workflow/schemas/config.schema.yaml"
CASES = {
    "digits cnn (the default base run)": {},
    # CIFAR-sized inputs without the dataset: mnist5k images padded to 32x32 would change the task,
    # so the ResNet runs on mnist5k itself, 28x28.
    "mnist5k resnet-20": {
        "task": "mnist5k",
        "model": "resnet",
        "width": 16,
        "depth": 3,
        "epochs": 1,
        "batch_size": 128,
    },
}


def bare_training(run: dict) -> None:
    """The training loop of the train stage without anything recorded."""
    task = load_task(run)
    torch.manual_seed(run["seed"])
    model = build_model(run, task).train()
    optimizer = build_optimizer(run, model)
    total_steps = run["epochs"] * (task.train_size // run["batch_size"])
    lrs = lr_schedule(run, total_steps)
    for step, indices in minibatches(
        run["seed"], task.train_size, run["batch_size"], 0, total_steps
    ):
        forward_backward(model, optimizer, task, indices, lrs[step], step)
        optimizer.step()
    evaluate(model, task)  # the train stage ends so too, recording or not


def timed(function, *args) -> tuple[float, float]:
    """(wall seconds, process CPU seconds) of one call."""
    wall, cpu = time.perf_counter(), time.process_time()
    function(*args)
    return time.perf_counter() - wall, time.process_time() - cpu


def ratios(recorded: list[float], bare: list[float]) -> str:
    paired = statistics.median(r / b for r, b in zip(recorded, bare))
    return f"best {min(recorded) / min(bare):.3f}, median of pairs {paired:.3f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1, help="as the workflow's default")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} thread(s), best of {args.repeats}")
    for name, changes in CASES.items():
        run = expand_runs(validate_config({"base": changes}, SCHEMA))["base"]
        with tempfile.TemporaryDirectory() as folder:
            out = Path(folder) / "trajectory.h5"
            load_task(run)  # the data loads once, outside the timings (both sides load it)
            recorded, bare = [], []
            for _ in range(args.repeats):
                out.unlink(missing_ok=True)
                recorded.append(timed(train, run, out, "cpu"))
                bare.append(timed(bare_training, run))
        for clock, column in (("wall", 0), ("cpu", 1)):
            with_recording = [times[column] for times in recorded]
            without = [times[column] for times in bare]
            print(
                f"{name}, {clock} time: with recording {min(with_recording):.2f} s, "
                f"without {min(without):.2f} s; with / without: "
                f"{ratios(with_recording, without)}"
            )


if __name__ == "__main__":
    main()
