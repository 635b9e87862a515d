"""The input pipeline: the minibatches a stage asks for, in order, built ahead by loader workers.

    requests = (Request(indices, Draw(AUGMENT_TRAIN, (step,)), tag=step) for step, indices in ...)
    for step, inputs, targets in batches(task, requests, workers=4):
        ...

A stage states every minibatch it will need as a `Request` (example indices, their augmentation
draw, a tag it wants back). For data read from disk, a `torch.utils.data.DataLoader` whose batch
sampler yields exactly those requests builds them in `workers` processes (0: in this process),
`prefetch` batches ahead per worker, into pinned memory, copied to the GPU without blocking. A
batch is a pure function of its request (the augmentation is keyed by position, augment.py), so
the bits do not depend on the number of workers, and the trajectory's `batch_indices` are the
requests' indices. Workers hand over images as stored (uint8): they are standardized on the
device. In-memory tasks skip the loader: their batches are one indexing op on the device, built
when asked.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import NamedTuple

import torch

from nowrongturns.tasks.augment import Draw
from nowrongturns.tasks.task import DatasetExamples, Task


class Request(NamedTuple):  # a tuple: one is made for every training step
    indices: torch.Tensor  # of examples of `split`
    draw: Draw | None = None  # the augmentation (training examples only); None: none
    split: str = "train"
    tag: object = None  # handed back with the batch


class _RequestedBatches(torch.utils.data.Dataset):
    """A dataset whose 'index' is a whole Request: __getitems__ builds that minibatch."""

    def __init__(self, task: Task):
        self.task = task.to("cpu")

    def __getitems__(self, request: Request):
        inputs, targets = self.task.stored_batch(request.indices, request.split, request.draw)
        return request.tag, request.split, inputs, targets

    def __getitem__(self, request: Request):  # not used: the loader asks __getitems__
        return self.__getitems__(request)


def _as_built(batch):
    return batch  # __getitems__ built the batch already: nothing to collate


def on_disk(task: Task) -> bool:
    return isinstance(task.train, DatasetExamples)


def batches(
    task: Task, requests: Iterable[Request], workers: int = 0, prefetch: int = 2
) -> Iterator[tuple[object, torch.Tensor, torch.Tensor]]:
    """(tag, inputs, targets) of every request, in order, on the task's device."""
    if not on_disk(task):
        for request in requests:
            yield request.tag, *task.batch(request.indices, request.split, request.draw)
        return
    cuda = task.device.type == "cuda"
    loader = torch.utils.data.DataLoader(
        _RequestedBatches(task),
        batch_sampler=requests,
        collate_fn=_as_built,
        num_workers=workers,
        prefetch_factor=prefetch if workers else None,
        pin_memory=cuda,
    )
    for tag, split, inputs, targets in loader:  # standardized on the device, after the move
        yield tag, *task.finish(inputs, targets, split, non_blocking=cuda)
