"""Tiny datasets in the real on-disk formats: CIFAR pickles, an ImageFolder tree of JPEGs,
WikiText token files, Vaihingen TIFFs, noise images; the real loaders read them."""

from __future__ import annotations

import pickle
from pathlib import Path

import fake_cifar10  # benchmarks/, on pytest's pythonpath
import numpy as np
from PIL import Image


def write_pickle(path, content):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(pickle.dumps(content))


def write_cifar10(root, rng):
    """Two training images in each of the five data batches, three test images."""
    return fake_cifar10.write_cifar10(root, train=10, test=3, rng=rng)


def write_cifar100(root, rng):
    """cifar-100-python/ as torchvision reads it: fine and coarse labels, fine ones used."""
    folder = root / "cifar-100-python"
    for name, count in {"train": 6, "test": 2}.items():
        write_pickle(
            folder / name,
            {
                "data": rng.integers(0, 256, (count, 3072), dtype=np.uint8),
                "fine_labels": rng.integers(0, 100, count).tolist(),
                "coarse_labels": rng.integers(0, 20, count).tolist(),
                "filenames": [f"{name}_{i}.png" for i in range(count)],
            },
        )
    names = {"fine_label_names": [f"fine{i}" for i in range(100)]}
    write_pickle(folder / "meta", names | {"coarse_label_names": [f"c{i}" for i in range(20)]})
    return folder


IMAGENET_COLOURS = {"n01440764": (200, 30, 30), "n01443537": (20, 160, 240)}


def write_image_folder(root, per_class: dict[str, int]):
    for wnid, count in per_class.items():
        (root / wnid).mkdir(parents=True)
        for i in range(count):  # one solid colour per class, odd sizes to resize and crop
            Image.new("RGB", (40 + 7 * i, 30), IMAGENET_COLOURS[wnid]).save(
                root / wnid / f"{wnid}_{i}.JPEG"
            )


# WikiText's own format: a space-led line per paragraph or heading, blank lines between.
WIKITEXT_TRAIN = " \n = Valkyria = \n \n the game began in 2010 . \n the <unk> ended . \n"


WIKITEXT_VALID = " \n the game ended . \n"


def write_wikitext(root, valid: str = WIKITEXT_VALID):
    (root / "wiki.train.tokens").write_text(WIKITEXT_TRAIN, encoding="utf-8")
    (root / "wiki.valid.tokens").write_text(valid, encoding="utf-8")


# Classes 0..5 in the ISPRS order.
VAIHINGEN_COLOURS = [(255, 255, 255), (0, 0, 255), (0, 255, 255), (0, 255, 0), (255, 255, 0)]
VAIHINGEN_COLOURS += [(255, 0, 0)]


def write_vaihingen(root, rng, sizes: dict[int, tuple[int, int]], masked: set[int]):
    """IRRG images top/ for every area; colour-coded masks gts_for_participants/ for `masked`.
    Returns the class of each pixel of each masked area."""
    (root / "top").mkdir()
    (root / "gts_for_participants").mkdir()
    labels = {}
    for area, (height, width) in sizes.items():
        name = f"top_mosaic_09cm_area{area}.tif"
        image = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
        Image.fromarray(image).save(root / "top" / name)
        if area in masked:
            labels[area] = rng.integers(0, 6, (height, width))
            mask = np.array(VAIHINGEN_COLOURS, dtype=np.uint8)[labels[area]]
            Image.fromarray(mask).save(root / "gts_for_participants" / name)
    return labels


def write_noise_images(root: Path, per_class: int, rng: np.random.Generator) -> None:
    """An ImageFolder tree of random-pixel JPEGs of 60 x 45, two classes."""
    from PIL import Image

    for wnid in ("n01440764", "n01443537"):
        (root / wnid).mkdir(parents=True)
        for i in range(per_class):
            pixels = rng.integers(0, 256, (45, 60, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(root / wnid / f"{wnid}_{i}.JPEG")


def first_files_of_every_layout(root: Path) -> dict[str, str]:
    """Each local task's data directory under `root`, holding only the first files of its layout
    (empty): what a dry run checks. As the config's `data`."""
    from nowrongturns.config.data_dirs import FIRST_FILES

    for task, paths in FIRST_FILES.items():
        for path in paths:
            (root / task / path).parent.mkdir(parents=True, exist_ok=True)
            (root / task / path).touch()
    return {task: str(root / task) for task in FIRST_FILES}
