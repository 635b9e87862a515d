"""Peak memory of one Hessian-vector product of the sharpness analysis / that of one training step.

    python benchmarks/sharpness_memory.py     # ResNet-20 on mnist5k and a transformer, batch 128
    python benchmarks/sharpness_memory.py --device cuda   # the same, GPU memory allocated

Three sides per model, each in a fresh process (peak resident memory only grows, so one process
measures one thing): one training step (forward and backward of a minibatch of `--batch`
examples); one product H v of the Hessian of the loss of `--examples` examples accumulated over
chunks as the sharpness stage takes them (analyses/sharpness.py: one minibatch where the model has
BatchNorm, a quarter of one elsewhere); and the same product in one chunk of all `--examples` (the
stage before chunking). Each prints the growth of its peak resident memory over the process's
peak once the model and data are loaded. Printed: each growth, and the ratios to the training
step's. Goal: the chunked product within 1.5x. On `--device cuda` the peak is that of the memory
torch's allocator handed out (its own count, exact, where resident memory on the CPU also counts
what the C allocator keeps after a free).
"""

import argparse
import json
import resource
import subprocess
import sys
from pathlib import Path

import torch

from nowrongturns.analyses.curvature import hessian_product
from nowrongturns.analyses.sharpness import product_parts
from nowrongturns.config import expand_runs, validate_config
from nowrongturns.models import build_model
from nowrongturns.tasks.load import load_task

SCHEMA = Path(__file__).resolve().parents[1] / "workflow/schemas/config.schema.yaml"
MODELS = {
    "resnet": {"task": "mnist5k", "model": "resnet", "width": 16, "depth": 3},  # BatchNorm
    "transformer": {  # LayerNorm: examples independent
        "task": "pydoc",
        "model": "transformer",
        "width": 128,
        "depth": 2,
        "heads": 4,
        "context": 128,
    },
}
SIDES = ("training step", "chunked product", "one-chunk product")


def peak_mb(device: str) -> float:
    if device == "cuda":
        torch.cuda.synchronize()
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: kB


def measure_side(model_name: str, side: str, batch: int, examples: int, device: str) -> float:
    """Growth of this process's peak memory (MB) for one `side`, over the loaded baseline."""
    torch.set_num_threads(1)
    changes = {**MODELS[model_name], "batch_size": batch}
    run = expand_runs(validate_config({"base": changes}, SCHEMA))["base"]
    task = load_task(run)
    torch.manual_seed(0)
    model = build_model(run, task).train().to(device)
    params = list(model.parameters())
    inputs, targets = (t.to(device) for t in task.batch(torch.arange(examples)))
    vector = torch.randn(sum(p.numel() for p in params), dtype=torch.float64, device=device)
    baseline = peak_mb(device)
    if side == "training step":
        loss = task.loss(model(inputs[:batch]), targets[:batch])
        loss.backward()
    else:
        size = batch // product_parts(model) if side == "chunked product" else examples
        chunks = [
            (inputs[start : start + size], targets[start : start + size], size / examples)
            for start in range(0, examples, size)
        ]

        def loss_of(x, y):
            return task.loss(model(x).double(), y)

        hessian_product(loss_of, params, chunks)(vector)
    return peak_mb(device) - baseline


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--examples", type=int, default=512)
    parser.add_argument("--models", nargs="+", choices=list(MODELS), default=list(MODELS))
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--side", choices=SIDES, help=argparse.SUPPRESS)  # one side, internal
    args = parser.parse_args()
    if args.side:
        growth = measure_side(args.models[0], args.side, args.batch, args.examples, args.device)
        print(json.dumps(growth))
        return
    for model_name in args.models:
        growth = {}
        for side in SIDES:
            command = [sys.executable, __file__, "--side", side, "--models", model_name]
            command += ["--batch", str(args.batch), "--examples", str(args.examples)]
            command += ["--device", args.device]
            result = subprocess.run(command, capture_output=True, text=True, check=True)
            growth[side] = float(result.stdout.strip().splitlines()[-1])
        step = growth["training step"]
        run = MODELS[model_name]
        print(
            f"{run['model']} on {run['task']}, batch {args.batch}, Hessian of {args.examples}, "
            f"on {args.device}"
        )
        for side, megabytes in growth.items():
            ratio = megabytes / step
            print(f"{side:>18}: {megabytes:8.1f} MB peak growth, {ratio:5.2f} x the step")


if __name__ == "__main__":
    main()
