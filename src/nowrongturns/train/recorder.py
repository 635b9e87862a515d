"""What the train stage keeps of a run besides the trajectory writer: per-step scalars on the
device, checkpoints written in the background, and the RNG states a resumed run restores.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch

from nowrongturns.trajectory.writer import TrajectoryWriter


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
    def before_step(self, step: int, clipping: bool) -> None:
        """Keep the weights before the step; where the gradient will be clipped, record its norms
        now, before clipping (else after the step, in one op with the update's)."""
        if clipping:
            grad_norms = torch._foreach_norm([p.grad for p in self.params])
            torch.stack(grad_norms, out=self.tensor_norms[step, 0])
        torch._foreach_copy_(self.previous, self.params)

    @torch.no_grad()
    def after_step(self, step: int, loss: torch.Tensor, clip_factor: torch.Tensor | None) -> None:
        """Record the step just taken: its loss, clip factor, gradient and update norms."""
        self.losses[step] = loss
        torch._foreach_sub_(self.previous, self.params)
        if clip_factor is None:  # one op for both: a step costs a handful of small ops
            norms = torch._foreach_norm([p.grad for p in self.params] + self.previous)
            torch.stack(norms, out=self.tensor_norms[step].view(-1))
        else:
            self.clip_factors[step] = clip_factor
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
            self.writer.check_space(diverged + 1 - self.flushed, checkpoint=None)
            self.writer.append_steps(self._block(self.flushed, diverged + 1))
            return diverged
        block = self._block(self.flushed, step)
        self.flushed = step
        self.wait()  # one write in flight at a time, in order
        self.pending = self.background.submit(self._write, block, step, state)
        return None

    def _write(self, block: dict, step: int, state: dict) -> None:
        self.writer.check_space(len(block["step"]), checkpoint=step)  # before writing any of it
        self.writer.append_steps(block)
        self.writer.append_checkpoint(step, **state)

    def wait(self) -> None:
        """Wait for the write in flight; its error, if any, is raised here (once)."""
        pending, self.pending = self.pending, None
        if pending is not None:
            pending.result()

    def close(self) -> None:
        """Wait for the write in flight, even when training failed (its error is then moot)."""
        try:
            self.wait()
        finally:
            self.background.shutdown()


def _total_norms(per_tensor: torch.Tensor) -> np.ndarray:
    """[steps, tensors] norms of each parameter tensor -> [steps] norms over all of them."""
    return torch.linalg.vector_norm(per_tensor.double(), dim=1).cpu().numpy()
