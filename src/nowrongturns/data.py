"""Tasks: the examples of a dataset, its fixed train/validation split, and its loss.

A task's training examples are addressed by the integer indices the trajectory stores, so any
stage rebuilds the exact minibatch of any step with `task.batch(indices)`.

    task = load_task({"task": "digits", ...})      # a run config
    inputs, targets = task.batch(torch.tensor([3, 1, 4]))
    loss = task.loss(model(inputs), targets)
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

# The split is a property of the task, not of the run: every run (any seed) sees the same split.
SPLIT_SEED = 0
VALIDATION_FRACTION = 0.2

# What the model predicts per example: one class, a class per pixel, or the next token per position.
KINDS = ("classification", "segmentation", "language")


class TensorExamples:
    """Examples held in memory as two tensors (inputs, targets), indexed in one operation."""

    def __init__(self, inputs: torch.Tensor, targets: torch.Tensor):
        self.inputs, self.targets = inputs, targets

    def __len__(self) -> int:
        return len(self.targets)

    def get(self, indices: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.inputs[indices], self.targets[indices]

    def to(self, device: torch.device) -> TensorExamples:
        return TensorExamples(self.inputs.to(device), self.targets.to(device))


class DatasetExamples:
    """Examples read one by one from a torch Dataset (data on disk), stacked into a batch."""

    def __init__(self, dataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def get(self, indices: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        items = [self.dataset[int(i)] for i in indices]
        inputs = torch.stack([torch.as_tensor(x) for x, _ in items])
        return inputs, torch.stack([torch.as_tensor(y) for _, y in items])

    def to(self, device: torch.device) -> DatasetExamples:
        return self  # read on demand; Task.batch moves each batch


@dataclass
class Task:
    name: str
    kind: str
    train: TensorExamples | DatasetExamples
    validation: TensorExamples | DatasetExamples
    num_classes: int  # classes, pixel classes, or vocabulary size
    input_shape: tuple[int, ...]
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    # What identifies the data beyond the task name (a corpus sha256, the data path): JSON-able,
    # stored in the trajectory's `data_provenance` attribute.
    provenance: dict = field(default_factory=dict)

    @property
    def train_size(self) -> int:
        return len(self.train)

    def batch(self, indices: torch.Tensor, split: str = "train"):
        """(inputs, targets) of the examples at `indices`, on the task's device."""
        examples = self.train if split == "train" else self.validation
        inputs, targets = examples.get(indices.to(self._index_device(examples)))
        return inputs.to(self.device), targets.to(self.device)

    def _index_device(self, examples) -> torch.device:
        return self.device if isinstance(examples, TensorExamples) else torch.device("cpu")

    def loss(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Mean cross-entropy over examples, pixels or tokens."""
        if self.kind == "language":  # logits [B, T, V]: the class dimension goes second
            logits = logits.movedim(-1, 1)
        return F.cross_entropy(logits, targets)

    def to(self, device: torch.device) -> Task:
        return dataclasses.replace(
            self,
            train=self.train.to(device),
            validation=self.validation.to(device),
            device=torch.device(device),
        )


def split_indices(size: int) -> tuple[np.ndarray, np.ndarray]:
    """(train, validation) indices of a dataset of `size` examples, the same for every run."""
    order = np.random.default_rng(SPLIT_SEED).permutation(size)
    n_val = int(round(VALIDATION_FRACTION * size))
    return order[n_val:], order[:n_val]


def in_memory_task(
    name: str, kind: str, inputs: np.ndarray, targets: np.ndarray, num_classes: int
) -> Task:
    """A task over arrays held in memory, split into train and validation by `split_indices`."""
    train, val = split_indices(len(inputs))
    inputs = torch.from_numpy(np.ascontiguousarray(inputs))
    targets = torch.from_numpy(np.ascontiguousarray(targets, dtype=np.int64))
    return Task(
        name,
        kind,
        TensorExamples(inputs[train], targets[train]),
        TensorExamples(inputs[val], targets[val]),
        num_classes,
        tuple(inputs.shape[1:]),
    )


def load_digits(run: dict) -> Task:
    """scikit-learn's bundled 8x8 digits (1797 images), pixels in [0, 1], shape [N, 1, 8, 8]."""
    from sklearn.datasets import load_digits as sklearn_digits

    digits = sklearn_digits()
    images = (digits.images[:, None, :, :] / 16.0).astype(np.float32)
    return in_memory_task("digits", "classification", images, digits.target, num_classes=10)


TASKS = {"digits": load_digits}


def load_task(run: dict) -> Task:
    """The task a run config names (key `task`), on the CPU; `.to(device)` moves it."""
    if run["task"] not in TASKS:
        raise ValueError(f"task {run['task']!r} is unknown; known tasks: {', '.join(TASKS)}")
    return TASKS[run["task"]](run)


# Independent random streams, each seeded from (run seed, stream, position) so that any minibatch
# can be redrawn alone: the data order of any epoch, the sampled minibatches of any checkpoint.
DATA_ORDER, SAMPLED, RANDOM_LABELS = range(3)


def seeded_generator(*keys: int) -> torch.Generator:
    seed = np.random.SeedSequence([int(k) for k in keys]).generate_state(1, np.uint64)[0]
    return torch.Generator().manual_seed(int(seed))


def epoch_order(seed: int, epoch: int, size: int) -> torch.Tensor:
    """The shuffled order of the training set in one epoch."""
    return torch.randperm(size, generator=seeded_generator(seed, DATA_ORDER, epoch))
