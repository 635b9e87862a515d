"""The train stage: one run config in, one trajectory file out.

    nwt train --run '{"task": "digits", "model": "cnn", ...}' --out results/runs/base/trajectory.h5
    torchrun --standalone --nproc-per-node 4 -m nowrongturns train --run ... --out ...   # DDP

Minibatches are drawn without replacement within an epoch (the last incomplete batch is dropped,
so every step has `batch_size` examples) in an order seeded by (seed, epoch); the indices of every
step are stored, so later stages rebuild the exact minibatch the optimizer saw. A killed job leaves
`trajectory.h5.partial`; running it again resumes from the last checkpoint and ends with the same
trajectory as a job that was never killed. A non-finite loss ends the run with status "diverged".
Under torchrun each process trains on its shard of every minibatch (distributed.py); rank 0 alone
writes the trajectory. Data on disk come through the input pipeline (tasks/pipeline.py).
"""

from __future__ import annotations

import sys

import torch

from nowrongturns import distributed
from nowrongturns.config.sizes import checkpoint_steps
from nowrongturns.models import build_model, resolve_device
from nowrongturns.optim.learning_rates import lr_schedule
from nowrongturns.optim.optimizers import build_optimizer
from nowrongturns.optim.state import load_state_vector, state_size
from nowrongturns.precision import apply_precision, autocast, uses_channels_last
from nowrongturns.progress import Progress
from nowrongturns.step import (
    clip_gradients,
    minibatch_backward,
    minibatches,
    set_lr,
    step_requests,
)
from nowrongturns.tasks.load import load_task
from nowrongturns.tasks.pipeline import Request, batches
from nowrongturns.train.recorder import TrainingLog
from nowrongturns.trajectory.state import checkpoint_state, load_flat, rng_states, set_rng_states
from nowrongturns.trajectory.writer import TrajectoryWriter


def train(
    run: dict,
    out_path: str,
    device: str = "auto",
    run_name: str = "",
    data_workers: int = 0,
    precision: str = "fp32",
) -> str:
    """Train one run and write its trajectory; returns its status (complete or diverged).
    Under torchrun, every process calls it; rank 0 writes."""
    rank, world_size = distributed.world()
    device = distributed.init(resolve_device(device))
    apply_precision(precision)
    task = load_task(run).to(device)
    torch.manual_seed(run["seed"])
    model = build_model(run, task).to(device).train()
    if uses_channels_last(model, device, precision):
        model = model.to(memory_format=torch.channels_last)
    optimizer = build_optimizer(run, model)
    params = list(model.parameters())
    stepper = model
    if world_size > 1:
        device_ids = [device.index] if device.type == "cuda" else None
        stepper = torch.nn.parallel.DistributedDataParallel(model, device_ids=device_ids)

    batch_size, train_size = run["batch_size"], task.train_size
    steps_per_epoch = train_size // batch_size
    if steps_per_epoch == 0:
        raise ValueError(f"batch_size {batch_size} exceeds the {train_size} training examples")
    replicas = run.get("batch_shards", 1)  # of each process's part of a minibatch
    distributed.shards(batch_size, world_size * replicas)  # refuses a batch that does not divide
    total_steps = run["epochs"] * steps_per_epoch
    saved_steps = set(
        checkpoint_steps(total_steps, **run["checkpoint"], steps_per_epoch=steps_per_epoch)
    )
    writer = None
    if rank == 0:
        writer = TrajectoryWriter(
            out_path,
            run,
            model,
            state_size(optimizer, run["optimizer"]),
            {name: state.size for name, state in rng_states(device).items()},
            batch_size,
            str(device),
            task.provenance,
            world_size=world_size,
            precision=precision,
        )
    resumed = distributed.broadcast(writer.resume_state() if writer else None, device)
    start = 0
    if resumed:
        load_flat(model, resumed["weights"], resumed["buffers"])
        load_state_vector(optimizer, run["optimizer"], resumed["optimizer"])
        set_rng_states(resumed["rng"], device)
        start = resumed["step"]
    lrs = lr_schedule(run, total_steps)
    recorder = progress = None
    if rank == 0:
        recorder = TrainingLog(
            writer, params, total_steps, batch_size, steps_per_epoch, lrs, device, start
        )
        progress = Progress(f"train {run_name or out_path}", total_steps, "step", batch_size, start)

    def save_checkpoint(step: int) -> int | None:
        """Rank 0 writes checkpoint `step`; every rank learns whether the run diverged."""
        diverged = None
        if recorder is not None:
            state = checkpoint_state(model, optimizer, run["optimizer"], device)
            diverged = recorder.checkpoint(step, state)
            progress.line(**({"loss": float(recorder.losses[step - 1])} if step else {}))
        return distributed.broadcast(diverged, device)

    diverged = None
    try:
        steps = minibatches(run["seed"], train_size, batch_size, start, total_steps)
        requests = step_requests(steps, batch_size, world_size, rank)
        for (step, indices), inputs, targets in batches(task, requests, data_workers):
            if step in saved_steps and not (resumed and step == start):
                diverged = save_checkpoint(step)
                if diverged is not None:
                    break
            set_lr(optimizer, lrs[step])
            optimizer.zero_grad()
            loss = minibatch_backward(stepper, task, inputs, targets, replicas, precision)
            if world_size > 1:
                loss = distributed.mean_over_ranks(loss)  # the minibatch's, not a shard's
            if recorder is not None:
                recorder.batches[step] = indices.numpy()
                recorder.before_step(step, clipping=run["clip_grad_norm"] is not None)
            clip_factor = clip_gradients(params, run["clip_grad_norm"])
            optimizer.step()
            if recorder is not None:
                recorder.after_step(step, loss, clip_factor)
                if progress.advance(step + 1):
                    progress.line(loss=float(loss))
        else:
            if not (resumed and start == total_steps):  # killed after its last checkpoint
                diverged = save_checkpoint(total_steps)
    except BaseException:
        if recorder is not None:
            try:
                recorder.close()
            finally:
                writer.abandon()
        raise
    if recorder is None:  # another rank: rank 0 evaluates and writes
        distributed.close()
        return "diverged" if diverged is not None else "complete"
    recorder.close()
    progress.close()
    distributed.close()
    if diverged is not None:
        writer.finish(status="diverged", diverged_step=diverged)
        print(
            f"{run_name or out_path}: diverged at step {diverged} (non-finite loss)",
            file=sys.stderr,
        )
        return "diverged"
    val_loss, val_accuracy = evaluate(model, task, precision=precision, workers=data_workers)
    writer.finish(final_val_loss=val_loss, final_val_accuracy=val_accuracy)
    print(
        f"{run_name or out_path}: {total_steps} steps, {len(saved_steps)} checkpoints, "
        f"last train loss {recorder.losses[-1].item():.4f}, validation accuracy {val_accuracy:.4f}",
        file=sys.stderr,
    )
    return "complete"


@torch.no_grad()
def evaluate(
    model: torch.nn.Module, task, chunk: int = 1024, precision: str = "fp32", workers: int = 0
) -> tuple[float, float]:
    """Validation loss and accuracy (over examples, pixels or tokens; NaN where nothing is
    classified: regression, objective), in eval mode."""
    model.eval()
    loss_sum = correct = count = 0.0
    requests = (
        Request(torch.arange(start, min(start + chunk, len(task.validation))), split="validation")
        for start in range(0, len(task.validation), chunk)
    )
    for _, inputs, targets in batches(task, requests, workers):
        with autocast(precision, inputs.device):
            logits = model(inputs)
            loss = task.loss(logits, targets)
        examples = len(targets)
        loss_sum += loss.item() * examples
        class_dim = -1 if task.kind == "language" else 1
        correct += (logits.argmax(class_dim) == targets).double().mean().item() * examples
        count += examples
    model.train()
    classified = task.kind in ("classification", "segmentation", "language")
    return loss_sum / count, correct / count if classified else float("nan")
