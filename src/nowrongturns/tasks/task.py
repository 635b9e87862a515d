"""Tasks: the examples of a dataset, its fixed train/validation split, and its loss.

A task's training examples are addressed by the integer indices the trajectory stores, so any
stage rebuilds the exact minibatch of any step with `task.batch(indices)`.

    task = load_task({"task": "digits", ...})      # a run config
    inputs, targets = task.batch(torch.tensor([3, 1, 4]))
    loss = task.loss(model(inputs), targets)

The loaders build on the classes here: the embedded tasks (digits, mnist5k, mnist5k-seg, pydoc) in
`embedded.py`, the synthetic tasks whose answer is known (quadratic, rosenbrock) are in
`synthetic.py`, the local-path tasks (cifar10, cifar100, imagenet, wikitext2, vaihingen) in
`local.py`. Batches hold float32 inputs (images, regression inputs) or int64 token ids, and int64
targets (float32 for regression).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from nowrongturns.config.sizes import SPLIT_SEED, validation_count
from nowrongturns.tasks.augment import Draw, counter_uniforms

# What the model predicts per example: one class, a class per pixel, the next token per position,
# one real number (least squares), or the point w itself (the loss is an objective f(w)).
KINDS = ("classification", "segmentation", "language", "regression", "objective")


class DataLayoutError(ValueError):
    """A task's data on disk is missing or not in the layout its loader reads."""


class ImageStandardizer:
    """uint8 images [B, C, H, W] -> float32 on [0, 1], minus each channel's mean, over its std."""

    def __init__(self, mean, std):
        self.mean = torch.as_tensor(mean, dtype=torch.float32).view(-1, 1, 1)
        self.std = torch.as_tensor(std, dtype=torch.float32).view(-1, 1, 1)

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        return (images.float() / 255 - self.mean) / self.std

    def to(self, device: torch.device) -> ImageStandardizer:
        return ImageStandardizer(self.mean.to(device), self.std.to(device))


class TensorExamples:
    """Examples held in memory as two tensors (inputs, targets), indexed in one operation.

    Large image sets stay in memory as uint8 (a quarter of float32): `transform` turns each
    fetched batch into model inputs. Integer targets may be stored narrow too (uint8 masks); a
    batch's integer targets are int64, as cross-entropy needs; float targets (regression) stay.
    """

    def __init__(
        self,
        inputs: torch.Tensor,
        targets: torch.Tensor,
        transform: ImageStandardizer | None = None,
    ):
        self.inputs, self.targets, self.transform = inputs, targets, transform

    def __len__(self) -> int:
        return len(self.targets)

    def get(self, indices: torch.Tensor, augmentation=None, uniforms=None):
        """(inputs, targets) of the examples at `indices` as stored, augmented where asked (on
        the stored pixels, so that padding is black, as torchvision pads before ToTensor);
        `transform` comes after (Task.batch)."""
        inputs, targets = self.inputs[indices], self.targets[indices]
        if augmentation is not None:
            uniforms = torch.from_numpy(uniforms).to(inputs.device, non_blocking=True)
            inputs, targets = augmentation.batch(inputs, targets, uniforms)
        return inputs, targets if targets.is_floating_point() else targets.long()

    def to(self, device: torch.device) -> TensorExamples:
        transform = None if self.transform is None else self.transform.to(device)
        return TensorExamples(self.inputs.to(device), self.targets.to(device), transform)


def _identity(item):
    return item


class DatasetExamples:
    """Examples read one by one from a torch Dataset (data on disk), stacked into a batch.

    Each item's input goes through `plain` (unaugmented) or the augmentation's `image` with its
    own row of uniforms, then `to_tensor`: ImageNet resizes and center-crops where it does not
    random-crop, to uint8 pixels either way. `transform` (normalization) runs on the batch on its
    device, after the move (Task.batch): loader workers hand over a quarter of float32's bytes."""

    def __init__(
        self,
        dataset,
        plain=_identity,
        to_tensor=torch.as_tensor,
        transform: ImageStandardizer | None = None,
    ):
        self.dataset, self.plain, self.to_tensor = dataset, plain, to_tensor
        self.transform = transform

    def __len__(self) -> int:
        return len(self.dataset)

    def get(self, indices: torch.Tensor, augmentation=None, uniforms=None):
        inputs, targets = [], []
        for row, index in enumerate(indices.tolist()):
            item, target = self._item(index)
            if augmentation is None:
                item = self.plain(item)
            else:
                item = augmentation.image(item, uniforms[row])
            inputs.append(torch.as_tensor(self.to_tensor(item)))
            targets.append(torch.as_tensor(target))
        targets = torch.stack(targets)
        return torch.stack(inputs), targets.float() if targets.is_floating_point() else targets

    def _item(self, index: int):
        """Example `index`; a file that does not decode (a corrupt image: PIL's errors vary)
        stops the load naming it, where the dataset lists its files (ImageFolder)."""
        try:
            return self.dataset[index]
        except Exception as error:
            samples = getattr(self.dataset, "samples", None)
            where = samples[index][0] if samples else f"example {index} of {self.dataset!r}"
            raise DataLayoutError(f"{where}: cannot be read ({error!r})") from error

    def to(self, device: torch.device) -> DatasetExamples:
        # Read on demand; Task.batch moves each batch, then standardizes it there.
        transform = None if self.transform is None else self.transform.to(device)
        return DatasetExamples(self.dataset, self.plain, self.to_tensor, transform)


@dataclass
class Task:
    name: str
    kind: str
    train: TensorExamples | DatasetExamples
    validation: TensorExamples | DatasetExamples
    num_classes: int  # classes, pixel classes, vocabulary size, or outputs (regression, objective)
    input_shape: tuple[int, ...]
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    # What identifies the data beyond the task name (a corpus sha256, the data path): JSON-able,
    # stored in the trajectory's `data_provenance` attribute.
    provenance: dict = field(default_factory=dict)
    # Kind objective: f of each row of the outputs [B, n] (each row is the point w) -> [B].
    objective: Callable[[torch.Tensor], torch.Tensor] | None = None
    # `augment: standard` (augment.py), keyed by the run seed; None: no augmentation.
    augmentation: object | None = None
    augment_seed: int = 0

    @property
    def train_size(self) -> int:
        return len(self.train)

    def batch(self, indices: torch.Tensor, split: str = "train", draw: Draw | None = None):
        """(inputs, targets) of the examples at `indices`, on the task's device; training
        examples augmented as `draw` says, where the task augments (validation never is)."""
        return self.finish(*self.stored_batch(indices, split, draw), split)

    def stored_batch(self, indices: torch.Tensor, split: str = "train", draw: Draw | None = None):
        """The batch as stored (uint8 images), augmented: what a loader worker builds."""
        examples = self.train if split == "train" else self.validation
        # Not blocking: a blocking copy waits for the GPU's queue to drain at every step, and the
        # GPU then idles while the host launches the next forward (a pageable source is staged
        # before the call returns, so the indices may change afterwards).
        indices = indices.to(self._index_device(examples), non_blocking=True)
        if draw is None or self.augmentation is None or split != "train":
            return examples.get(indices)
        positions = np.arange(len(indices)) if draw.positions is None else draw.positions
        key = (self.augment_seed, *draw.stream, *draw.ids)
        uniforms = counter_uniforms(key, np.asarray(positions), self.augmentation.draws)
        return examples.get(indices, self.augmentation, uniforms)

    def finish(
        self,
        inputs: torch.Tensor,
        targets: torch.Tensor,
        split: str = "train",
        non_blocking: bool = False,
    ):
        """A stored batch moved to the task's device and standardized there."""
        examples = self.train if split == "train" else self.validation
        inputs = inputs.to(self.device, non_blocking=non_blocking)
        targets = targets.to(self.device, non_blocking=non_blocking)
        if examples.transform is not None:
            inputs = examples.transform(inputs)
        return inputs, targets

    def _index_device(self, examples) -> torch.device:
        return self.device if isinstance(examples, TensorExamples) else torch.device("cpu")

    def loss(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Mean cross-entropy over examples, pixels or tokens; for regression, half the mean
        squared error 1/2 mean_i (output_i - y_i)^2; for an objective, the mean of f over the
        output rows, f(w), whatever the (placeholder) examples."""
        if self.kind == "regression":
            return 0.5 * (logits.reshape(-1) - targets).square().mean()
        if self.kind == "objective":
            return self.objective(logits).mean()
        if self.kind == "segmentation":  # logits [B, C, H, W]: classes last, like language
            logits = logits.movedim(1, -1)
        # As [examples, classes]: CUDA's 2-D (pixel) nll_loss has no deterministic version.
        return F.cross_entropy(logits.reshape(-1, self.num_classes), targets.reshape(-1))

    @classmethod
    def from_arrays(
        cls,
        kind: str,
        inputs,
        targets,
        num_classes: int,
        *,
        validation=None,
        name: str = "",
        transform: ImageStandardizer | None = None,
        provenance: dict | None = None,
    ) -> Task:
        """A task over examples held in memory: numpy arrays or tensors, inputs [N, ...]
        (float, or int64 token ids) and targets [N, ...] (integer classes, or floats for
        regression). `validation`: its own (inputs, targets), else a fifth of the examples, the
        same for every run (`split_indices`). `transform` runs on each batch on its device.

            Task.from_arrays("classification", images, labels, num_classes=10)
        """
        if len(inputs) != len(targets):
            raise ValueError(f"task {name!r}: {len(inputs)} inputs but {len(targets)} targets")
        if validation is None:
            train_rows, validation_rows = split_indices(len(inputs))
            validation = inputs[validation_rows], targets[validation_rows]
            inputs, targets = inputs[train_rows], targets[train_rows]
        train = TensorExamples(_as_examples(inputs), _as_examples(targets), transform)
        validation = TensorExamples(*map(_as_examples, validation), transform)
        return cls._made(
            name, kind, train, validation, num_classes, tuple(train.inputs.shape[1:]), provenance
        )

    @classmethod
    def from_datasets(
        cls,
        kind: str,
        train,
        validation,
        num_classes: int,
        *,
        name: str = "",
        transform: ImageStandardizer | None = None,
        provenance: dict | None = None,
    ) -> Task:
        """A task over torch Datasets (data read from disk one example at a time): `dataset[i]`
        is (input, target), arrays or tensors. Batches are built by the input pipeline, in the
        stages' `data_workers` loader processes. `validation` None: a fifth of `train`.

            Task.from_datasets("segmentation", TileFolder("train/"), TileFolder("val/"), 6)
        """
        if validation is None:
            train_rows, validation_rows = split_indices(len(train))
            validation = torch.utils.data.Subset(train, validation_rows.tolist())
            train = torch.utils.data.Subset(train, train_rows.tolist())
        first = torch.as_tensor(train[0][0])
        examples = [
            DatasetExamples(dataset, to_tensor=_as_examples, transform=transform)
            for dataset in (train, validation)
        ]
        return cls._made(name, kind, *examples, num_classes, tuple(first.shape), provenance)

    @classmethod
    def _made(cls, name, kind, train, validation, num_classes, input_shape, provenance) -> Task:
        if kind not in KINDS:
            raise ValueError(f"task {name!r}: kind {kind!r} is none of {', '.join(KINDS)}")
        if len(train) == 0 or len(validation) == 0:
            raise ValueError(f"task {name!r}: no training or no validation examples")
        return cls(
            name,
            kind,
            train,
            validation,
            int(num_classes),
            input_shape,
            provenance=dict(provenance or {}),
        )

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
    n_val = validation_count(size)
    return order[n_val:], order[:n_val]


def _as_examples(values) -> torch.Tensor:
    """Arrays or tensors as a tensor, floats in float32 (what the models compute in)."""
    if isinstance(values, np.ndarray):  # a copy only where torch cannot share the memory
        writable = values.flags.writeable and values.flags.c_contiguous
        values = torch.from_numpy(values if writable else np.array(values))
    values = torch.as_tensor(values)
    return values.float() if values.is_floating_point() else values


def numpy_examples(
    inputs: np.ndarray, targets: np.ndarray, transform: ImageStandardizer | None = None
) -> TensorExamples:
    """TensorExamples over numpy arrays, copied into contiguous tensors of the same dtypes."""
    return TensorExamples(
        torch.from_numpy(np.ascontiguousarray(inputs)),
        torch.from_numpy(np.ascontiguousarray(targets)),
        transform,
    )


def positive_int(run: dict, key: str, task: str, default: int | None = None) -> int:
    """The run's integer `key`, or `default` where the run lacks it."""
    if key not in run and default is None:
        raise ValueError(f"{task}: the run key `{key}` (a positive integer) is missing")
    value = run.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{task}: the run key `{key}` must be a positive integer, got {value!r}")
    return value


def token_windows(ids: np.ndarray, context: int, source: str) -> tuple[np.ndarray, np.ndarray]:
    """Inputs and next-token targets [N, context] of the non-overlapping windows of context + 1
    tokens, in corpus order; the tokens after the last whole window are dropped."""
    count = len(ids) // (context + 1)
    if count == 0:
        raise ValueError(f"{source} has {len(ids)} tokens, too few for one window of `context` + 1")
    windows = ids[: count * (context + 1)].reshape(count, context + 1)
    return windows[:, :-1], windows[:, 1:]
