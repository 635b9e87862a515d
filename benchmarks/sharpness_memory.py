"""Peak memory of one Hessian-vector product of the sharpness analysis / that of one training step.

    python benchmarks/sharpness_memory.py     # ResNet-20 on mnist5k and a transformer, batch 128
    python benchmarks/sharpness_memory.py --device cuda   # the same, GPU memory allocated
    python benchmarks/sharpness_memory.py --device meta   # live tensor bytes, no data (any machine)

Four sides per model, each in a fresh process (peak resident memory only grows, so one process
measures one thing): one training step (forward and backward of a minibatch of `--batch`
examples); one product H v of the Hessian of the loss of `--examples` examples accumulated over
chunks as the sharpness stage takes them (analyses/sharpness.py: one minibatch where the model has
BatchNorm, a quarter of one elsewhere); the same with the tensors its graphs save kept in host
memory (what the stage falls back to where a product runs out of GPU memory; not run on the CPU,
whose memory is the host's); and the same product in one chunk of all `--examples` (the stage
before chunking). Each prints the growth of its peak memory over the process's peak once the
model and data are loaded, and the seconds of the side's work taken a second time (warm).
Printed: each growth and time, and their ratios to the training step's. Goal: a product within
1.5x the step's memory. The peak is, on `--device cpu`, the resident memory (which also counts what
the C allocator keeps after a free); on `cuda`, what torch's allocator handed out; on `meta`, the
bytes of the device's tensors alive at once, counted on fake tensors that hold no data (rounded
as the CUDA allocator rounds, without its cuDNN workspaces and caching): a device's count on a
machine without one.
"""

import argparse
import contextlib
import json
import resource
import subprocess
import sys
import time
import weakref
from pathlib import Path

import torch
from torch._subclasses.fake_tensor import FakeTensorMode
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten
from torch.utils.weak import WeakIdKeyDictionary

from nowrongturns.analyses.curvature import Offload, hessian_product
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
SIDES = ("training step", "chunked product", "offloaded product", "one-chunk product")


class LiveBytes(TorchDispatchMode):
    """The bytes of `device`'s tensor storages alive at once: now and at the peak."""

    def __init__(self, device: str):
        super().__init__()
        self.device, self.now, self.peak = device, 0, 0
        self.counted = WeakIdKeyDictionary()

    def count(self, tensors) -> None:
        for tensor in tensors:
            if not isinstance(tensor, torch.Tensor) or tensor.device.type != self.device:
                continue
            storage = tensor.untyped_storage()
            if storage in self.counted:
                continue
            size = -(-storage.nbytes() // 512) * 512  # the CUDA allocator's rounding
            self.counted[storage] = size
            self.now += size
            self.peak = max(self.peak, self.now)
            weakref.finalize(storage, self.free, size)

    def free(self, size: int) -> None:
        self.now -= size

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        outputs = func(*args, **(kwargs or {}))
        self.count(tree_flatten(outputs)[0])
        return outputs


def peak_mb(device: str, live: LiveBytes | None) -> float:
    if device == "cuda":
        torch.cuda.synchronize()
        return torch.cuda.max_memory_allocated() / 2**20
    if device == "meta":
        return live.peak / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: kB


def measure_side(
    model_name: str, side: str, batch: int, examples: int, device: str
) -> tuple[float, float]:
    """(growth of this process's peak memory (MB) over the loaded baseline, seconds) of one
    `side`. On a GPU, more than one side can be measured in one process."""
    changes = {**MODELS[model_name], "batch_size": batch}
    run = expand_runs(validate_config({"base": changes}, SCHEMA))["base"]
    task = load_task(run)
    torch.manual_seed(0)
    model = build_model(run, task).train()
    inputs, targets = task.batch(torch.arange(examples))
    live = LiveBytes(device) if device == "meta" else None
    with contextlib.ExitStack() as stack:
        if live is not None:  # fake tensors on the meta device: shapes, no data
            stack.enter_context(FakeTensorMode(allow_non_fake_inputs=True))
            stack.enter_context(live)
        model = model.to(device)
        params = list(model.parameters())
        inputs, targets = inputs.to(device), targets.to(device)
        vector = torch.randn(sum(p.numel() for p in params), dtype=torch.float64, device=device)
        if live is not None:
            live.count(params + list(model.buffers()))
            live.peak = live.now
        if device == "cuda":
            torch.cuda.reset_peak_memory_stats()
        baseline = peak_mb(device, live)
        if side == "training step":

            def work():
                task.loss(model(inputs[:batch]), targets[:batch]).backward()

        else:
            size = examples if side == "one-chunk product" else batch // product_parts(model)
            chunks = [
                (inputs[start : start + size], targets[start : start + size], size / examples)
                for start in range(0, examples, size)
            ]

            def loss_of(x, y):
                return task.loss(model(x).double(), y)

            offload = Offload(on=side == "offloaded product")
            product = hessian_product(loss_of, params, chunks, offload)

            def work():
                product(vector)

        work()  # warm: the second is timed (the peak is the same)
        started = time.perf_counter()
        work()
        growth = peak_mb(device, live) - baseline  # on a GPU, after waiting for the work
        return growth, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--examples", type=int, default=512)
    parser.add_argument("--models", nargs="+", choices=list(MODELS), default=list(MODELS))
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda", "meta"])
    parser.add_argument("--side", choices=SIDES, help=argparse.SUPPRESS)  # one side, internal
    args = parser.parse_args()
    if args.side:
        torch.set_num_threads(1)
        growth = measure_side(args.models[0], args.side, args.batch, args.examples, args.device)
        print(json.dumps(growth))
        return
    for model_name in args.models:
        measured = {}
        for side in SIDES:
            if side == "offloaded product" and args.device == "cpu":
                continue
            command = [sys.executable, __file__, "--side", side, "--models", model_name]
            command += ["--batch", str(args.batch), "--examples", str(args.examples)]
            command += ["--device", args.device]
            result = subprocess.run(command, capture_output=True, text=True, check=True)
            measured[side] = json.loads(result.stdout.strip().splitlines()[-1])
        step_growth, step_seconds = measured["training step"]
        run = MODELS[model_name]
        print(
            f"{run['model']} on {run['task']}, batch {args.batch}, Hessian of {args.examples}, "
            f"on {args.device}"
        )
        for side, (megabytes, seconds) in measured.items():
            line = f"{side:>18}: {megabytes:8.1f} MB peak growth, {megabytes / step_growth:5.2f} x"
            if args.device != "meta":  # fake tensors' time is the counting's
                line += f"; {seconds:7.3f} s, {seconds / step_seconds:5.1f} x the step's time"
            print(line)


if __name__ == "__main__":
    main()
