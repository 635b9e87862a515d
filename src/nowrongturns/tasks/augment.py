"""Training augmentation (`augment: standard`) as a pure function of (seed, stream, ids, position).

    task = load_task({..., "augment": "standard", "seed": 0})
    inputs, targets = task.batch(indices, draw=Draw(AUGMENT_TRAIN, (step,)))

The example at position j of a batch drawn for (stream, ids) — the train minibatch of step t is
(AUGMENT_TRAIN, (t,)), the streams numbered in nowrongturns.step — is augmented with the uniforms
`counter_uniforms((seed, *stream, *ids), [j], draws)`: the j-th block of a counter-based generator
(splitmix64, jumped straight to its counter), so any position is drawn alone, in any order, in any
process or loader worker, and a resumed run, dense replay and the measure stage rebuild the very
minibatch training saw.

What `standard` is per task: the reference code's training transform where it has one, its
analogue for the embedded images, nothing where the reference augments nothing (STANDARD).
In-memory images are augmented in batched tensor ops on their device; images read from disk
one by one, each with its own row of uniforms.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX = (np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB))


class Draw(NamedTuple):  # a tuple: one is made for every training step
    """Which augmentation a batch gets: its stream and ids, and each example's position in the
    batch (None: 0..B-1; the full batch passes the example indices)."""

    stream: tuple[int, ...]  # the stream's key (nowrongturns.step numbers them)
    ids: tuple[int, ...]
    positions: torch.Tensor | None = None


def counter_uniforms(key: tuple[int, ...], positions: np.ndarray, draws: int) -> np.ndarray:
    """float64 [len(positions), draws] uniforms on [0, 1): output number position * draws + k of
    the splitmix64 generator seeded by `key` (hashed by numpy's SeedSequence). uint64 arithmetic
    wraps by definition, so the bits are the same on every machine."""
    seed = np.random.SeedSequence([int(k) for k in key]).generate_state(1, np.uint64)[0]
    counters = np.asarray(positions, dtype=np.uint64)[:, None] * np.uint64(draws)
    counters = counters + np.arange(1, draws + 1, dtype=np.uint64)
    with np.errstate(over="ignore"):
        state = seed + counters * _GOLDEN
        state = (state ^ (state >> np.uint64(30))) * _MIX[0]
        state = (state ^ (state >> np.uint64(27))) * _MIX[1]
        state = state ^ (state >> np.uint64(31))
    return (state >> np.uint64(11)).astype(np.float64) * 2.0**-53


def _per_example(mask: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return mask.view(-1, *[1] * (like.dim() - 1))


class RandomCrop:
    """torchvision's RandomCrop(size, padding) of every image of a batch at once: zero padding
    on each side, then a crop at a random offset. Pixel targets (segmentation) move with the
    image; their padding is class 0 (background)."""

    draws = 2

    def __init__(self, padding: int):
        self.padding = padding

    def batch(self, inputs: torch.Tensor, targets: torch.Tensor, uniforms: torch.Tensor):
        offsets = (uniforms * (2 * self.padding + 1)).long().clamp_(max=2 * self.padding)
        inputs = self._crop(inputs, offsets)
        if targets.dim() == 3:  # [B, H, W] masks
            targets = self._crop(targets[:, None], offsets)[:, 0]
        return inputs, targets

    def _crop(self, images: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
        height, width = images.shape[-2:]
        padded = F.pad(images, (self.padding,) * 4)
        rows = offsets[:, 0, None] + torch.arange(height, device=images.device)  # [B, H]
        cols = offsets[:, 1, None] + torch.arange(width, device=images.device)  # [B, W]
        batch, channels = images.shape[:2]
        rows = rows.view(batch, 1, height, 1).expand(batch, channels, height, padded.shape[-1])
        picked = padded.gather(2, rows)
        cols = cols.view(batch, 1, 1, width).expand(batch, channels, height, width)
        return picked.gather(3, cols)


class FlipMirror:
    """A random vertical flip and a random horizontal mirror of each image and its pixel targets,
    each with probability 1/2 (the reference's Vaihingen training transform)."""

    draws = 2

    def batch(self, inputs: torch.Tensor, targets: torch.Tensor, uniforms: torch.Tensor):
        for axis, column in ((-2, 0), (-1, 1)):
            flip = uniforms[:, column] < 0.5
            inputs = torch.where(_per_example(flip, inputs), inputs.flip(axis), inputs)
            targets = torch.where(_per_example(flip, targets), targets.flip(axis), targets)
        return inputs, targets


class ResizedCropFlip:
    """torchvision's RandomResizedCrop(size) (scale 0.08-1, aspect ratio 3/4-4/3, ten tries, then
    the central crop) and RandomHorizontalFlip, of one PIL image, with its row of uniforms."""

    attempts = 10
    draws = 4 * attempts + 1
    scale, log_ratio = (0.08, 1.0), (math.log(3 / 4), math.log(4 / 3))

    def __init__(self, size: int):
        self.size = size

    def image(self, image, uniforms: np.ndarray):
        from torchvision.transforms import functional as TF

        top, left, height, width = self.box(image.height, image.width, uniforms)
        image = TF.resized_crop(image, top, left, height, width, [self.size, self.size])
        return TF.hflip(image) if uniforms[-1] < 0.5 else image

    def box(self, image_height: int, image_width: int, uniforms: np.ndarray):
        """(top, left, height, width), as RandomResizedCrop.get_params picks it."""
        area = image_height * image_width
        for attempt in range(self.attempts):
            u_area, u_ratio, u_top, u_left = uniforms[4 * attempt : 4 * attempt + 4]
            target_area = area * (self.scale[0] + u_area * (self.scale[1] - self.scale[0]))
            ratio = math.exp(self.log_ratio[0] + u_ratio * (self.log_ratio[1] - self.log_ratio[0]))
            width = int(round(math.sqrt(target_area * ratio)))
            height = int(round(math.sqrt(target_area / ratio)))
            if 0 < width <= image_width and 0 < height <= image_height:
                top = int(u_top * (image_height - height + 1))
                left = int(u_left * (image_width - width + 1))
                return top, left, height, width
        # The central crop at the nearest allowed aspect ratio, as torchvision falls back.
        ratio = image_width / image_height
        if ratio < 3 / 4:
            width, height = image_width, int(round(image_width / (3 / 4)))
        elif ratio > 4 / 3:
            height, width = image_height, int(round(image_height * (4 / 3)))
        else:
            width, height = image_width, image_height
        return (image_height - height) // 2, (image_width - width) // 2, height, width


# `augment: standard` per task. CIFAR: the reference's RandomCrop(32, padding=4), no flip.
# ImageNet: RandomResizedCrop(224) and a horizontal flip. Vaihingen: flips and mirrors of the
# tiles (the reference's random windows would make an example's pixels depend on the draw, not
# on its index; the tiles stay the examples). digits, mnist5k, mnist5k-seg (our analogue): the
# CIFAR crop scaled to the image, padding side / 8 (1 pixel of 8, 3 of 28), no flip, as digits
# are not mirror-symmetric. The language and synthetic tasks: none, as the reference has none.
STANDARD = {
    "cifar10": lambda: RandomCrop(4),
    "cifar100": lambda: RandomCrop(4),
    "imagenet": lambda: ResizedCropFlip(224),
    "vaihingen": FlipMirror,
    "digits": lambda: RandomCrop(1),
    "mnist5k": lambda: RandomCrop(3),
    "mnist5k-seg": lambda: RandomCrop(3),
}


def standard_augmentation(task_name: str):
    """The `standard` augmentation of a task, or None where it has none."""
    make = STANDARD.get(task_name)
    return make() if make else None
