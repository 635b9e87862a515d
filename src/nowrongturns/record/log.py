"""The recording both the train stage and a user's loop write through: per-step values held on
the device and moved to the host in one block per checkpoint, and checkpoints written to the
trajectory by a background thread while the next steps compute.

    log = StepLog(writer, device, capacity=total_steps)
    log.losses[step] = loss                    # no host sync
    log.checkpoint(step, state)                # the steps since the last one, then the state
    log.close()
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch

from nowrongturns.trajectory.writer import TrajectoryWriter


class StepLog:
    """Per-step losses on the device (grown as steps come where their number is not known),
    written with the other columns of `_block` at each checkpoint; one write in flight at a time.
    Subclasses add their columns in `_block` and `_grow`."""

    def __init__(
        self, writer: TrajectoryWriter | None, device: torch.device, capacity: int, start: int = 0
    ):
        self.writer, self.device = writer, device
        self.losses = torch.zeros(max(capacity, 1), device=device)
        self.flushed = start  # steps before this one are in the file
        self.background = ThreadPoolExecutor(1)
        self.pending = None

    def reserve(self, step: int) -> None:
        """Room for step `step`: the device buffers double when it is past their end."""
        if step >= len(self.losses):
            self._grow(max(2 * len(self.losses), step + 1))

    def _grow(self, capacity: int) -> None:
        self.losses = grown(self.losses, capacity)

    def _block(self, start: int, stop: int) -> dict[str, np.ndarray]:
        """The /steps columns of steps start..stop-1, on the host."""
        return {"step": np.arange(start, stop), "loss": self.losses[start:stop].cpu().numpy()}

    def checkpoint(self, step: int, state: dict[str, np.ndarray]) -> int | None:
        """Write the steps since the last checkpoint, then checkpoint `step` with `state`
        (weights, buffers, optimizer_state, rng_states); on a non-finite loss write up to the
        step that diverged and return it instead."""
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


def grown(values: torch.Tensor, capacity: int) -> torch.Tensor:
    """`values` in a buffer of `capacity` rows (on its device, its rows first, zeros after)."""
    bigger = values.new_zeros((capacity, *values.shape[1:]))
    bigger[: len(values)] = values
    return bigger
