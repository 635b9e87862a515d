"""The lab's data and network of the finished training (finished_training.py), and the two
factories through which the workflow rebuilds them to measure its checkpoints:

    base:
      task: "my_lab:digits"        # digits(run) -> nowrongturns.Task, the same examples
      model: "my_lab:small_cnn"    # small_cnn(input_shape, num_classes, run) -> nn.Module
"""

import numpy as np
from sklearn.datasets import load_digits
from torch import nn

from nowrongturns import Task


def digit_arrays() -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """scikit-learn's 8x8 digits as images [N, 1, 8, 8] in [0, 1]: the first 1500 to train."""
    digits = load_digits()
    images = (digits.images[:, None] / 16).astype(np.float32)
    return (images[:1500], digits.target[:1500]), (images[1500:], digits.target[1500:])


TRAIN, VALIDATION = digit_arrays()


def digits(run: dict) -> Task:
    return Task.from_arrays("classification", *TRAIN, num_classes=10, validation=VALIDATION)


def small_cnn(input_shape, num_classes: int, run: dict) -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(input_shape[0], 8, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(8, 16, 3, padding=1),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(16 * 4 * 4, num_classes),
    )
