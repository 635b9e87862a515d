"""What the train stage records of each step beyond the loss the shared step log keeps (the
public recorder's, record/log.py): the learning rate, the minibatch, the clip factor and the
norms of the gradient and of the update.
"""

from __future__ import annotations

import numpy as np
import torch

from nowrongturns.record.log import StepLog
from nowrongturns.trajectory.writer import TrajectoryWriter


class TrainingLog(StepLog):
    """The train stage's steps: every column of the trajectory format, the scalars held on the
    device and moved to the host in blocks, once per checkpoint."""

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
        super().__init__(writer, device, total_steps, start)
        self.steps_per_epoch, self.lrs = steps_per_epoch, lrs
        # Per step, the norms of each parameter tensor's gradient and update side by side (one
        # op for both); the norms over all parameters are taken, in float64, when a block of
        # steps goes to the host. A step costs a handful of small ops, whatever the model.
        self.params = params
        self.tensor_norms = torch.zeros(total_steps, 2, len(params), device=device)
        self.clip_factors = torch.ones(total_steps, device=device)
        self.previous = [torch.empty_like(p) for p in params]
        self.batches = np.zeros((total_steps, batch_size), dtype=np.int64)

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
        rows = slice(start, stop)
        return {
            **super()._block(start, stop),
            "epoch": np.arange(start, stop) // self.steps_per_epoch,
            "lr": self.lrs[rows],
            "grad_norm": _total_norms(self.tensor_norms[rows, 0]),
            "update_norm": _total_norms(self.tensor_norms[rows, 1]),
            "clip_factor": self.clip_factors[rows].cpu().numpy(),
            "batch_indices": self.batches[rows],
        }


def _total_norms(per_tensor: torch.Tensor) -> np.ndarray:
    """[steps, tensors] norms of each parameter tensor -> [steps] norms over all of them."""
    return torch.linalg.vector_norm(per_tensor.double(), dim=1).cpu().numpy()
