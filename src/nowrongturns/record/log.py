"""The recording both the train stage and a user's loop write through: per-step values held on
the device and moved to the host in one block per checkpoint, and checkpoints written to the
trajectory by a background thread while the next steps compute, those of one second together.

    log = StepLog(writer, device, capacity=total_steps)
    log.losses[step] = loss                    # no host sync
    log.checkpoint(step, state)                # the steps since the last one, then the state
    log.close()
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch

from nowrongturns.trajectory.writer import TrajectoryWriter

# A checkpoint taken less than WRITE_EVERY_SECONDS after the last write waits for the next one,
# unless the held checkpoints' arrays pass HELD_BYTES: a write makes some 70 HDF5 calls that hold
# the interpreter's lock, which stalled the training loop at each of a small run's many
# checkpoints. A killed job loses at most this much training (it resumes from the last written
# checkpoint, to the same trajectory); the first checkpoint is written at once.
WRITE_EVERY_SECONDS = 1.0
HELD_BYTES = 2**28


class StepLog:
    """Per-step losses on the device (grown as steps come where their number is not known),
    moved to the host with the other columns of `_block` at each checkpoint and written with it;
    one write in flight at a time. Subclasses add their columns in `_block` and `_grow`."""

    def __init__(
        self, writer: TrajectoryWriter | None, device: torch.device, capacity: int, start: int = 0
    ):
        self.writer, self.device = writer, device
        self.losses = torch.zeros(max(capacity, 1), device=device)
        self.flushed = start  # steps before this one are in the file
        self.background = ThreadPoolExecutor(1)
        self.pending = None
        self.held: list[tuple[dict, int, dict]] = []  # (steps block, step, state) not yet written
        self.held_bytes = 0  # of the held states' arrays
        self.next_write = 0.0  # time.monotonic() from which the held checkpoints are written

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
        """Hold the steps since the last checkpoint and checkpoint `step` with `state`
        (weights, buffers, optimizer_state, rng_states) for writing; on a non-finite loss write
        what is held and the steps up to the one that diverged, and return it instead."""
        finite = torch.isfinite(self.losses[self.flushed : step]).cpu().numpy()
        if not finite.all():
            diverged = self.flushed + int(np.argmin(finite))
            held = self._take_held()
            self.wait()
            if held:
                self._write(held)
            self.writer.check_space(diverged + 1 - self.flushed, checkpoint=None)
            self.writer.append_steps(self._block(self.flushed, diverged + 1))
            return diverged
        self.held.append((self._block(self.flushed, step), step, state))
        self.held_bytes += sum(array.nbytes for array in _arrays(state))
        self.flushed = step
        if time.monotonic() >= self.next_write or self.held_bytes >= HELD_BYTES:
            self._submit()
        return None

    def _take_held(self) -> list:
        held, self.held, self.held_bytes = self.held, [], 0
        self.next_write = time.monotonic() + WRITE_EVERY_SECONDS
        return held

    def _submit(self) -> None:
        held = self._take_held()  # dropped if the write in flight failed: the file is torn
        self.wait()  # one write in flight at a time, in order
        self.pending = self.background.submit(self._write, held)

    def _write(self, held: list) -> None:
        """The held steps and checkpoints in one append each, checked for room first."""
        blocks = [block for block, _, _ in held]
        steps = {name: np.concatenate([block[name] for block in blocks]) for name in blocks[0]}
        last = held[-1][1]
        self.writer.check_space(len(steps["step"]), checkpoint=last, checkpoints=len(held))
        self.writer.append_steps(steps)
        self.writer.append_checkpoints([(step, state) for _, step, state in held])

    def wait(self) -> None:
        """Wait for the write in flight; its error, if any, is raised here (once)."""
        pending, self.pending = self.pending, None
        if pending is not None:
            pending.result()

    def close(self, write_held: bool = True) -> None:
        """Write what is held (unless not `write_held`: the file is dropped) and wait for it, even
        when training failed: its checkpoints are whole, and a rerun resumes from them. An
        error of the write in flight is raised first, and what is held is then not written."""
        try:
            self.wait()
            if self.held and write_held:
                self._write(self._take_held())
        finally:
            self.background.shutdown()


def _arrays(state: dict) -> list[np.ndarray]:
    """The arrays of a checkpoint's state, the rng states' among them."""
    return [
        array
        for value in state.values()
        for array in (value.values() if isinstance(value, dict) else [value])
    ]


def grown(values: torch.Tensor, capacity: int) -> torch.Tensor:
    """`values` in a buffer of `capacity` rows (on its device, its rows first, zeros after)."""
    bigger = values.new_zeros((capacity, *values.shape[1:]))
    bigger[: len(values)] = values
    return bigger
