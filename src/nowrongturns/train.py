"""The train stage: one run config in, one trajectory file out.

    nwt train --run '{"task": "digits", "model": "cnn", ...}' --out results/runs/base/trajectory.h5

Minibatches are drawn without replacement within an epoch (the last incomplete batch is dropped,
so every step has `batch_size` examples) in an order seeded by (seed, epoch); the indices of every
step are stored, so later stages rebuild the exact minibatch the optimizer saw. A killed job leaves
`trajectory.h5.partial`; running it again resumes from the last checkpoint and ends with the same
trajectory as a job that was never killed. A non-finite loss ends the run with status "diverged".
"""

from __future__ import annotations

import os
import sys
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch
from tqdm import tqdm

from .augment import AUGMENT_TRAIN, Draw
from .data import epoch_order, load_task
from .models import build_model, resolve_device
from .optim import build_optimizer, load_state_vector, lr_schedule, state_size, state_vector
from .trajectory import TrajectoryWriter, flat_buffers, flat_parameters, load_flat


def checkpoint_steps(total_steps: int, dense_first: int, every: int) -> list[int]:
    """Steps 0..dense_first-1, then every `every`-th step, then always the last step T."""
    dense = range(min(dense_first, total_steps))
    sparse = (s for s in range(0, total_steps, every) if s >= dense_first)
    return sorted({*dense, *sparse, total_steps})


def minibatches(seed: int, train_size: int, batch_size: int, start: int, total_steps: int):
    """(step, example indices) of every step from `start` on: each epoch's shuffled order cut
    into batches, the last incomplete one dropped."""
    steps_per_epoch = train_size // batch_size
    for step in range(start, total_steps):
        epoch, position = divmod(step, steps_per_epoch)
        if position == 0 or step == start:
            order = epoch_order(seed, epoch, train_size)
        yield step, order[position * batch_size : (position + 1) * batch_size]


def forward_backward(
    model, optimizer, task, indices: torch.Tensor, lr: float, step: int
) -> torch.Tensor:
    """Set the learning rate, then the loss on step `step`'s minibatch (augmented as that step's
    draw) and its gradient, ready to clip and step."""
    for group in optimizer.param_groups:
        group["lr"] = lr
    inputs, targets = task.batch(indices, draw=Draw(AUGMENT_TRAIN, (step,)))
    loss = task.loss(model(inputs), targets)
    optimizer.zero_grad()
    loss.backward()
    return loss


def clip_gradients(params: list, max_norm: float | None) -> torch.Tensor | None:
    """Clip the gradients in .grad to global norm `max_norm` (clip_grad_norm_) and return the
    factor applied, min(1, max_norm / (norm + 1e-6)) as torch computes it; None: no clipping."""
    if max_norm is None:
        return None
    norm = torch.nn.utils.clip_grad_norm_(params, max_norm)
    return torch.clamp(max_norm / (norm + 1e-6), max=1.0)


def rng_states(device: torch.device) -> dict[str, np.ndarray]:
    states = {"cpu": torch.get_rng_state().numpy()}
    if device.type == "cuda":
        states["cuda"] = torch.cuda.get_rng_state(device).numpy()
    return states


def set_rng_states(states: dict[str, np.ndarray], device: torch.device) -> None:
    torch.set_rng_state(torch.from_numpy(states["cpu"]))
    if device.type == "cuda":
        torch.cuda.set_rng_state(torch.from_numpy(states["cuda"]), device)


class Recorder:
    """What the train stage keeps of a run: per-step scalars, held on the device and moved to the
    host in blocks, once per checkpoint; checkpoints, written to the trajectory by a background
    thread while the next steps compute."""

    def __init__(
        self,
        writer: TrajectoryWriter,
        params: list,
        total_steps: int,
        batch_size: int,
        steps_per_epoch: int,
        lrs: np.ndarray,
        device: torch.device,
        start: int,
    ):
        self.writer, self.steps_per_epoch, self.lrs = writer, steps_per_epoch, lrs
        self.losses = torch.zeros(total_steps, device=device)
        # Per step, the norms of each parameter tensor's gradient and update side by side (one
        # op for both); the norms over all parameters are taken, in float64, when a block of
        # steps goes to the host. A step costs a handful of small ops, whatever the model.
        self.params = params
        self.tensor_norms = torch.zeros(total_steps, 2, len(params), device=device)
        self.clip_factors = torch.ones(total_steps, device=device)
        self.previous = [torch.empty_like(p) for p in params]
        self.batches = np.zeros((total_steps, batch_size), dtype=np.int64)
        self.flushed = start  # steps before this one are in the file
        self.background = ThreadPoolExecutor(1)
        self.pending = None

    @torch.no_grad()
    def before_step(self, step: int) -> None:
        """Record the gradient's norms (before any clipping) and the weights before the step."""
        grad_norms = torch._foreach_norm([p.grad for p in self.params])
        torch.stack(grad_norms, out=self.tensor_norms[step, 0])
        torch._foreach_copy_(self.previous, self.params)

    @torch.no_grad()
    def after_step(self, step: int, loss: torch.Tensor, clip_factor: torch.Tensor | None) -> None:
        """Record the step just taken: its loss, clip factor and update norms."""
        self.losses[step] = loss
        if clip_factor is not None:
            self.clip_factors[step] = clip_factor
        torch._foreach_sub_(self.previous, self.params)
        torch.stack(torch._foreach_norm(self.previous), out=self.tensor_norms[step, 1])

    def _block(self, start: int, stop: int) -> dict[str, np.ndarray]:
        rows, steps = slice(start, stop), np.arange(start, stop)
        return {
            "step": steps,
            "epoch": steps // self.steps_per_epoch,
            "loss": self.losses[rows].cpu().numpy(),
            "lr": self.lrs[rows],
            "grad_norm": _total_norms(self.tensor_norms[rows, 0]),
            "update_norm": _total_norms(self.tensor_norms[rows, 1]),
            "clip_factor": self.clip_factors[rows].cpu().numpy(),
            "batch_indices": self.batches[rows],
        }

    def checkpoint(self, step: int, state: dict[str, np.ndarray]) -> int | None:
        """Write the steps since the last checkpoint, then checkpoint `step` with `state`
        (weights, buffers, optimizer, rng); on a non-finite loss write up to the step that
        diverged and return it instead."""
        finite = torch.isfinite(self.losses[self.flushed : step]).cpu().numpy()
        if not finite.all():
            diverged = self.flushed + int(np.argmin(finite))
            self.wait()
            self.writer.append_steps(self._block(self.flushed, diverged + 1))
            return diverged
        block = self._block(self.flushed, step)
        self.flushed = step
        self.wait()  # one write in flight at a time, in order
        self.pending = self.background.submit(self._write, block, step, state)
        return None

    def _write(self, block: dict, step: int, state: dict) -> None:
        self.writer.append_steps(block)
        self.writer.append_checkpoint(step, **state)

    def wait(self) -> None:
        if self.pending is not None:
            self.pending.result()
            self.pending = None

    def close(self) -> None:
        """Wait for the write in flight, even when training failed (its error is then moot)."""
        try:
            self.wait()
        finally:
            self.background.shutdown()


def checkpoint_state(model, optimizer, optimizer_name: str, device) -> dict[str, np.ndarray]:
    """Host copies of everything training needs to go on from here."""
    return {
        "weights": flat_parameters(model).cpu().numpy(),
        "buffers": flat_buffers(model).cpu().numpy(),
        "optimizer_state": state_vector(optimizer, optimizer_name).cpu().numpy(),
        "rng_states": rng_states(device),
    }


def train(run: dict, out_path: str, device: str = "auto", run_name: str = "") -> str:
    """Train one run and write its trajectory; returns its status (complete or diverged)."""
    device = resolve_device(device)
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # for deterministic cuBLAS
    torch.use_deterministic_algorithms(True)
    task = load_task(run).to(device)
    torch.manual_seed(run["seed"])
    model = build_model(run, task).to(device).train()
    optimizer = build_optimizer(run, model)
    params = list(model.parameters())

    batch_size, train_size = run["batch_size"], task.train_size
    steps_per_epoch = train_size // batch_size
    if steps_per_epoch == 0:
        raise ValueError(f"batch_size {batch_size} exceeds the {train_size} training examples")
    total_steps = run["epochs"] * steps_per_epoch
    saved_steps = set(checkpoint_steps(total_steps, **run["checkpoint"]))
    writer = TrajectoryWriter(
        out_path,
        run,
        model,
        state_size(optimizer, run["optimizer"]),
        {name: state.size for name, state in rng_states(device).items()},
        batch_size,
        str(device),
        task.provenance,
    )
    start = 0
    resumed = writer.resume_state()
    if resumed:
        load_flat(model, resumed["weights"], resumed["buffers"])
        load_state_vector(optimizer, run["optimizer"], resumed["optimizer"])
        set_rng_states(resumed["rng"], device)
        start = resumed["step"]
    lrs = lr_schedule(run, total_steps)
    recorder = Recorder(
        writer, params, total_steps, batch_size, steps_per_epoch, lrs, device, start
    )

    def save_checkpoint(step: int) -> int | None:
        return recorder.checkpoint(
            step, checkpoint_state(model, optimizer, run["optimizer"], device)
        )

    diverged = None
    try:
        steps = minibatches(run["seed"], train_size, batch_size, start, total_steps)
        for step, indices in tqdm(steps, desc=f"train {run_name}", disable=None):
            if step in saved_steps and not (resumed and step == start):
                diverged = save_checkpoint(step)
                if diverged is not None:
                    break
            recorder.batches[step] = indices.numpy()
            loss = forward_backward(model, optimizer, task, indices, lrs[step], step)
            recorder.before_step(step)
            clip_factor = clip_gradients(params, run["clip_grad_norm"])
            optimizer.step()
            recorder.after_step(step, loss.detach(), clip_factor)
        else:
            if not (resumed and start == total_steps):  # killed after its last checkpoint
                diverged = save_checkpoint(total_steps)
    except BaseException:
        recorder.close()
        writer.abandon()
        raise
    recorder.close()
    if diverged is not None:
        writer.finish(status="diverged", diverged_step=diverged)
        print(
            f"{run_name or out_path}: diverged at step {diverged} (non-finite loss)",
            file=sys.stderr,
        )
        return "diverged"
    val_loss, val_accuracy = evaluate(model, task)
    writer.finish(final_val_loss=val_loss, final_val_accuracy=val_accuracy)
    print(
        f"{run_name or out_path}: {total_steps} steps, {len(saved_steps)} checkpoints, "
        f"last train loss {recorder.losses[-1].item():.4f}, validation accuracy {val_accuracy:.4f}",
        file=sys.stderr,
    )
    return "complete"


def _total_norms(per_tensor: torch.Tensor) -> np.ndarray:
    """[steps, tensors] norms of each parameter tensor -> [steps] norms over all of them."""
    return torch.linalg.vector_norm(per_tensor.double(), dim=1).cpu().numpy()


@torch.no_grad()
def evaluate(model: torch.nn.Module, task, chunk: int = 1024) -> tuple[float, float]:
    """Validation loss and accuracy (over examples, pixels or tokens; NaN where nothing is
    classified: regression, objective), in eval mode."""
    model.eval()
    loss_sum = correct = count = 0.0
    for start in range(0, len(task.validation), chunk):
        indices = torch.arange(start, min(start + chunk, len(task.validation)))
        inputs, targets = task.batch(indices, split="validation")
        logits = model(inputs)
        loss_sum += task.loss(logits, targets).item() * len(indices)
        class_dim = -1 if task.kind == "language" else 1
        correct += (logits.argmax(class_dim) == targets).double().mean().item() * len(indices)
        count += len(indices)
    model.train()
    classified = task.kind in ("classification", "segmentation", "language")
    return loss_sum / count, correct / count if classified else float("nan")
