"""DDP inside one training job (docs/cluster.md#inside-a-gpu-job): N processes, one shard of
each minibatch each.

    torchrun --standalone --nproc-per-node 2 -m nowrongturns train --run run.json --out t.h5

The minibatch of step t is the same B examples whatever N: process r takes positions r B/N to
(r + 1) B/N (its shard, augmented by position, so as in one process), normalizes them by its own
BatchNorm statistics, and DDP averages the N shard gradients. torchrun sets RANK, WORLD_SIZE and
LOCAL_RANK; without them a run is one process. Every later stage computes the same gradient in one
process (`shards`), so a DDP trajectory is measured and replayed on one device.
"""

from __future__ import annotations

import os

import torch
import torch.distributed as dist


def world() -> tuple[int, int]:
    """(rank, world size) of this process, from torchrun's environment; (0, 1) alone."""
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))


def init(device: torch.device) -> torch.device:
    """Join the process group (NCCL on GPUs, gloo on the CPU); each process its own GPU."""
    if world()[1] == 1:
        return device
    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
        torch.cuda.set_device(device)
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return device


def close() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def shards(batch_size: int, world_size: int) -> list[slice]:
    """The positions of each shard of a minibatch."""
    if batch_size % world_size:
        raise ValueError(
            f"batch_size {batch_size} is not divisible into {world_size} shards "
            "(train.processes x batch_shards): every shard must hold the same number of examples"
        )
    size = batch_size // world_size
    return [slice(rank * size, (rank + 1) * size) for rank in range(world_size)]


def broadcast(value, device: torch.device):
    """Rank 0's `value` (any picklable object), on every rank."""
    if world()[1] == 1:
        return value
    holder = [value]
    dist.broadcast_object_list(holder, src=0, device=device if device.type == "cuda" else None)
    return holder[0]


def mean_over_ranks(value: torch.Tensor) -> torch.Tensor:
    """The mean of a tensor over the ranks (gloo has no AVG: a sum, divided)."""
    if world()[1] == 1:
        return value
    total = value.clone()
    dist.all_reduce(total)
    return total / world()[1]
