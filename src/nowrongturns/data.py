"""Tasks: a dataset held as tensors, its fixed train/validation split, and its loss.

Every task returns a `Task` whose train set is indexed by the integer minibatch indices that the
trajectory stores, so any stage can rebuild the exact minibatch of any step.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

# The split is a property of the task, not of the run: every run (any seed) sees the same split.
SPLIT_SEED = 0
VALIDATION_FRACTION = 0.2


@dataclass
class Task:
    name: str
    train_x: torch.Tensor
    train_y: torch.Tensor
    val_x: torch.Tensor
    val_y: torch.Tensor
    num_classes: int

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.train_x.shape[1:])

    def loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(logits, labels)

    def to(self, device: torch.device) -> Task:
        return Task(
            self.name,
            *(t.to(device) for t in (self.train_x, self.train_y, self.val_x, self.val_y)),
            self.num_classes,
        )


def _split(x: np.ndarray, y: np.ndarray, name: str, num_classes: int) -> Task:
    order = np.random.default_rng(SPLIT_SEED).permutation(len(x))
    n_val = int(round(VALIDATION_FRACTION * len(x)))
    val, train = order[:n_val], order[n_val:]
    images = [_tensor(x[part], np.float32) for part in (train, val)]
    labels = [_tensor(y[part], np.int64) for part in (train, val)]
    return Task(name, images[0], labels[0], images[1], labels[1], num_classes)


def _tensor(array: np.ndarray, dtype) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(array, dtype=dtype))


def load_digits() -> Task:
    """scikit-learn's bundled 8x8 digits (1797 images), pixels in [0, 1], shape [N, 1, 8, 8]."""
    from sklearn.datasets import load_digits as sklearn_digits

    digits = sklearn_digits()
    images = digits.images[:, None, :, :] / 16.0
    return _split(images, digits.target, "digits", num_classes=10)


TASKS = {"digits": load_digits}

# Independent random streams, each seeded from (run seed, stream, position) so that any minibatch
# can be redrawn alone: the data order of any epoch, the sampled minibatches of any checkpoint.
DATA_ORDER, SAMPLED, RANDOM_LABELS = range(3)


def seeded_generator(*keys: int) -> torch.Generator:
    seed = np.random.SeedSequence([int(k) for k in keys]).generate_state(1, np.uint64)[0]
    return torch.Generator().manual_seed(int(seed))


def epoch_order(seed: int, epoch: int, size: int) -> torch.Tensor:
    """The shuffled order of the training set in one epoch."""
    return torch.randperm(size, generator=seeded_generator(seed, DATA_ORDER, epoch))


def load_task(name: str) -> Task:
    if name not in TASKS:
        raise ValueError(f"task {name!r} is unknown; known tasks: {', '.join(TASKS)}")
    return TASKS[name]()
