"""ISPRS Vaihingen 2D semantic labeling from its TIFFs under `data_dir`: the reference code's
train and validation areas, cut into tiles that are the examples (`load`).
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import numpy as np

from nowrongturns.tasks.local import channel_statistics, data_dir, require
from nowrongturns.tasks.task import (
    DataLayoutError,
    ImageStandardizer,
    Task,
    numpy_examples,
    positive_int,
)

VAIHINGEN_LAYOUT = (
    "the ISPRS Vaihingen 2D semantic labeling layout: top/top_mosaic_09cm_area<N>.tif "
    "(3-channel IRRG images) and gts_for_participants/top_mosaic_09cm_area<N>.tif "
    "(RGB colour-coded ground truth)"
)
VAIHINGEN_AREA = re.compile(r"top_mosaic_09cm_area(\d+)\.tif")
# The ISPRS colour code of each class in the ground-truth masks.
VAIHINGEN_COLOURS = {
    (255, 255, 255): 0,  # impervious surfaces
    (0, 0, 255): 1,  # building
    (0, 255, 255): 2,  # low vegetation
    (0, 255, 0): 3,  # tree
    (255, 255, 0): 4,  # car
    (255, 0, 0): 5,  # clutter/background
}


def read_rgb_tif(path: Path) -> np.ndarray:
    """A 3-channel uint8 TIFF as [H, W, 3]."""
    from PIL import Image

    try:
        with Image.open(path) as image:
            pixels = np.asarray(image)
    except OSError as error:  # PIL's UnidentifiedImageError is an OSError
        raise DataLayoutError(f"vaihingen: cannot read {path} as an image ({error})") from error
    if pixels.dtype != np.uint8 or pixels.ndim != 3 or pixels.shape[2] != 3:
        raise DataLayoutError(
            f"vaihingen: {path} holds {pixels.dtype} pixels of shape {pixels.shape}, "
            "expected 3 channels of uint8"
        )
    return pixels


def rgb_code(rgb) -> np.ndarray:
    """One integer per colour, so that a colour is compared in one operation."""
    rgb = np.asarray(rgb, dtype=np.int32)
    return (rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]


def mask_labels(path: Path) -> np.ndarray:
    """The class of each pixel of a colour-coded ground-truth mask, uint8 [H, W]."""
    colours = read_rgb_tif(path)
    codes = rgb_code(colours)
    labels = np.full(codes.shape, 255, dtype=np.uint8)
    for colour, label in VAIHINGEN_COLOURS.items():
        labels[codes == rgb_code(colour)] = label
    unknown = np.argwhere(labels == 255)
    if len(unknown):
        row, col = unknown[0]
        raise DataLayoutError(
            f"vaihingen: {path} has the colour {tuple(colours[row, col].tolist())} at pixel "
            f"(row {row}, column {col}), none of the ISPRS classes {list(VAIHINGEN_COLOURS)}"
        )
    return labels


def tiles(array: np.ndarray, size: int, stride: int | None = None) -> np.ndarray:
    """The size x size tiles of a [C, H, W] array whose corners lie `stride` pixels apart
    (default `size`: non-overlapping), row by row: [N, C, size, size]. Tiles that would cross
    the right or bottom border are dropped."""
    channels = array.shape[0]
    if min(array.shape[1:]) < size:
        return np.empty((0, channels, size, size), dtype=array.dtype)
    windows = np.lib.stride_tricks.sliding_window_view(array, (size, size), axis=(1, 2))
    windows = windows[:, :: stride or size, :: stride or size]  # [C, rows, cols, size, size]
    return windows.transpose(1, 2, 0, 3, 4).reshape(-1, channels, size, size)


def vaihingen_masks(root: Path) -> dict[int, Path]:
    """The ground-truth mask of each area that has one, by area number in increasing order."""
    folder = root / "gts_for_participants"
    found = {p: VAIHINGEN_AREA.fullmatch(p.name) for p in folder.iterdir()}
    masks = dict(sorted((int(match.group(1)), p) for p, match in found.items() if match))
    if not masks:
        raise DataLayoutError(
            f"vaihingen: {folder} has no top_mosaic_09cm_area<N>.tif (expected {VAIHINGEN_LAYOUT})"
        )
    require("vaihingen", root, [f"top/{p.name}" for p in masks.values()], VAIHINGEN_LAYOUT)
    return masks


def area_tiles(mask_path: Path, size: int, stride: int) -> tuple[np.ndarray, np.ndarray]:
    """uint8 image tiles [N, 3, size, size] and label tiles [N, size, size] of one area."""
    image_path = mask_path.parents[1] / "top" / mask_path.name
    image, labels = read_rgb_tif(image_path), mask_labels(mask_path)
    if image.shape[:2] != labels.shape:
        raise DataLayoutError(
            f"vaihingen: {image_path} is {image.shape[:2]} pixels, but its ground truth "
            f"{mask_path} is {labels.shape}"
        )
    return tiles(image.transpose(2, 0, 1), size, stride), tiles(labels[None], size, stride)[:, 0]


# The reference code's split of the 16 areas with public ground truth (main_segmentation.py).
VAIHINGEN_TRAIN_AREAS = (1, 3, 5, 7, 11, 13, 15, 17, 21, 23, 26)
VAIHINGEN_VALIDATION_AREAS = (28, 30, 32, 34, 37)


def vaihingen_split(root: Path, size: int, stride: int, areas, masks: dict[int, Path], split):
    """uint8 image tiles and label tiles of the `areas` that have a mask, pooled in area order."""
    found = [area for area in areas if area in masks]
    if not found:
        raise DataLayoutError(
            f"vaihingen: {root / 'gts_for_participants'} has none of the {split} areas "
            f"{list(areas)} (expected {VAIHINGEN_LAYOUT})"
        )
    per_area = [area_tiles(masks[area], size, stride) for area in found]
    images, labels = (np.concatenate(arrays) for arrays in zip(*per_area))
    if len(images) == 0:
        raise DataLayoutError(
            f"vaihingen: no {split} area under {root} is at least `tile` = {size} pixels wide "
            "and high"
        )
    return found, images, labels


def load(run: dict) -> Task:
    """ISPRS Vaihingen 2D semantic labeling: 6 classes per pixel, from IRRG orthophotos.

    Train on the reference code's train areas, validate on its validation areas (those of them
    that are there; a missing one is named on stderr). Every area is cut into tiles of `tile`
    pixels (run key `tile`, default 256) whose corners lie `tile_stride` pixels apart (training
    areas; default `tile`: non-overlapping; validation areas always non-overlapping), tiles that
    would cross a border dropped. The tiles are the examples, addressed by index; the reference
    draws 10 000 random windows an epoch instead, about as many as a stride of 64 cuts.
    Tiles stay uint8 in memory; a batch is float32 [B, 3, tile, tile], standardized by the
    channel mean and std of the training tiles; targets int64.
    """
    size = positive_int(run, "tile", "vaihingen", default=256)
    root = data_dir(run, "vaihingen", VAIHINGEN_LAYOUT)
    require("vaihingen", root, ["top", "gts_for_participants"], VAIHINGEN_LAYOUT)
    masks = vaihingen_masks(root)
    listed = (*VAIHINGEN_TRAIN_AREAS, *VAIHINGEN_VALIDATION_AREAS)
    missing = [area for area in listed if area not in masks]
    if missing:
        print(f"vaihingen: {root} lacks the reference's areas {missing}", file=sys.stderr)
    stride = run.get("tile_stride") or size  # the schema's null: non-overlapping
    train_areas, train_images, train_labels = vaihingen_split(
        root, size, stride, VAIHINGEN_TRAIN_AREAS, masks, "train"
    )
    validation_areas, validation_images, validation_labels = vaihingen_split(
        root, size, size, VAIHINGEN_VALIDATION_AREAS, masks, "validation"
    )
    standardize = ImageStandardizer(*channel_statistics(train_images))
    provenance = {
        "data_dir": str(root.resolve()),
        "train_areas": train_areas,
        "validation_areas": validation_areas,
        "tile": size,
        "tile_stride": stride,
    }
    return Task(
        "vaihingen",
        "segmentation",
        numpy_examples(train_images, train_labels, standardize),
        numpy_examples(validation_images, validation_labels, standardize),
        len(VAIHINGEN_COLOURS),
        (3, size, size),
        provenance=provenance,
    )
