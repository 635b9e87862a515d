"""Tasks whose data are read from a directory (run key `data_dir`), never downloaded.

CIFAR-10/100 (torchvision's python format), ImageNet (ImageFolder), WikiText-2 (token files) and
ISPRS Vaihingen (orthophoto and ground-truth TIFFs, in `vaihingen.py`). A missing or malformed
directory stops the load with a DataLayoutError naming the path and the layout expected.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from nowrongturns.tasks.cifar_pickle import cifar_batch_arrays, load_cifar_batch
from nowrongturns.tasks.task import (
    DataLayoutError,
    DatasetExamples,
    ImageStandardizer,
    Task,
    numpy_examples,
    positive_int,
    token_windows,
)


def data_dir(run: dict, task: str, layout: str) -> Path:
    """The run's `data_dir`, which must be a directory; errors name the key or the path."""
    if not run.get("data_dir"):
        raise ValueError(
            f"{task}: the run key `data_dir` is missing or empty; "
            f"it must name the directory holding {layout}"
        )
    root = Path(run["data_dir"]).expanduser()
    if not root.is_dir():
        raise DataLayoutError(f"{task}: data_dir {root} is not a directory (expected {layout})")
    return root


def require(task: str, root: Path, names: list[str], layout: str) -> None:
    """Stop, naming what is missing, unless every path `names` lists exists under `root`."""
    missing = [name for name in names if not (root / name).exists()]
    if missing:
        raise DataLayoutError(f"{task}: {root} has no {', '.join(missing)} (expected {layout})")


def channel_statistics(images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and std of each channel of uint8 images [N, C, H, W], on the [0, 1] scale.

    Counted from each channel's histogram of the 256 values: exact, and no float copy of the
    images. A constant channel gets std 1/255 rather than a division by zero.
    """
    values = np.arange(256) / 255.0
    counts = np.stack(
        [np.bincount(images[:, c].ravel(), minlength=256) for c in range(images.shape[1])]
    )
    mean = counts @ values / counts.sum(axis=1)
    std = np.sqrt(np.maximum(counts @ values**2 / counts.sum(axis=1) - mean**2, 0))
    return mean, np.maximum(std, 1 / 255)


def cifar_files(cifar_class) -> list[tuple[str, str]]:
    """(name, official md5) of every file a torchvision CIFAR class reads, in its folder."""
    data_files = [(name, md5) for name, md5 in cifar_class.train_list + cifar_class.test_list]
    return [*data_files, (cifar_class.meta["filename"], cifar_class.meta["md5"])]


def cifar_layout(cifar_class) -> str:
    names = [name for name, _ in cifar_files(cifar_class)]
    return (
        f"torchvision's {cifar_class.__name__} python format: {cifar_class.base_folder}/ "
        f"holding {', '.join(names)}, as extracted from {cifar_class.filename}"
    )


def is_official_release(root: Path, cifar_class) -> bool:
    from torchvision.datasets.utils import check_integrity

    folder = root / cifar_class.base_folder
    return all(check_integrity(folder / name, md5) for name, md5 in cifar_files(cifar_class))


# The reference code's CIFAR-10 normalization constants (src/dataset/__init__.py).
CIFAR10_STATISTICS = ((0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010))


def reference_split(size: int) -> tuple[np.ndarray, np.ndarray]:
    """(train, validation) indices of the reference code's CIFAR split: torch's random_split of
    the official training set into int(0.8 N) and the rest, by a generator seeded 1. Train index
    i is then the reference's train subset's example i."""
    import torch

    order = torch.randperm(size, generator=torch.Generator().manual_seed(1)).numpy()
    return order[: int(size * 0.8)], order[int(size * 0.8) :]


def load_cifar(run: dict, name: str, cifar_class, num_classes: int) -> Task:
    """The official training set of a torchvision CIFAR class, split 80/20 into train and
    validation as the reference code splits it (`reference_split`); the official test set stays
    untouched (its files must be there, as in the release, but are not read).

    Images stay uint8 [N, 3, 32, 32] in memory; a batch is float32, standardized by the
    reference's fixed constants (CIFAR-10) or the channel mean and std of the training images
    (CIFAR-100, which the reference has no experiment on).
    """
    layout = cifar_layout(cifar_class)
    root = data_dir(run, name, layout)
    folder = root / cifar_class.base_folder
    require(
        name,
        root,
        [f"{cifar_class.base_folder}/{file}" for file, _ in cifar_files(cifar_class)],
        layout,
    )
    # Read through the restricted unpickler (cifar_pickle.py), never torchvision's pickle.load:
    # a batch file from elsewhere cannot run code; the meta file too, for the same reason.
    meta = load_cifar_batch(folder / cifar_class.meta["filename"], name)
    if cifar_class.meta["key"] not in meta:
        raise DataLayoutError(
            f"{name}: {folder / cifar_class.meta['filename']} has no field "
            f"{cifar_class.meta['key']!r}; expected {layout}"
        )
    label_key = "labels" if name == "cifar10" else "fine_labels"
    batches = [
        cifar_batch_arrays(folder / file, name, label_key, num_classes)
        for file, _ in cifar_class.train_list
    ]
    images = np.concatenate([batch_images for batch_images, _ in batches])
    labels = np.concatenate([batch_labels for _, batch_labels in batches])
    train, validation = reference_split(len(labels))
    statistics = CIFAR10_STATISTICS if name == "cifar10" else channel_statistics(images[train])
    standardize = ImageStandardizer(*statistics)
    provenance = {
        "data_dir": str(root.resolve()),
        "official_release": is_official_release(root, cifar_class),
    }
    return Task(
        name,
        "classification",
        numpy_examples(images[train], labels[train], standardize),
        numpy_examples(images[validation], labels[validation], standardize),
        num_classes,
        (3, 32, 32),
        provenance=provenance,
    )


def load_cifar10(run: dict) -> Task:
    """CIFAR-10 in torchvision's python format under `data_dir`: of its 50 000 training
    images, 40 000 train and 10 000 validate."""
    from torchvision.datasets import CIFAR10

    return load_cifar(run, "cifar10", CIFAR10, num_classes=10)


def load_cifar100(run: dict) -> Task:
    """CIFAR-100 (fine labels) in torchvision's python format under `data_dir`."""
    from torchvision.datasets import CIFAR100

    return load_cifar(run, "cifar100", CIFAR100, num_classes=100)


IMAGENET_LAYOUT = (
    "ImageFolder trees train/<wnid>/*.JPEG and val/<wnid>/*.JPEG, the validation images sorted "
    "into the same class folders as the training images"
)
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def image_folder(folder: Path):
    """PIL images and class indices of an ImageFolder tree (transformed by DatasetExamples)."""
    from torchvision.datasets import ImageFolder

    try:
        return ImageFolder(folder)
    except OSError as error:  # no class folder, or a class folder without images
        raise DataLayoutError(
            f"imagenet: {folder} is not an image folder ({error}); expected {IMAGENET_LAYOUT}"
        ) from error


def load_imagenet(run: dict) -> Task:
    """ImageNet (ILSVRC-2012) as ImageFolder trees under `data_dir`, read from disk on demand.

    Unaugmented images (validation always, training with `augment: none`) are resized to 256 and
    center-cropped to 224, so a minibatch is a function of its indices alone; `augment:
    standard` random-resized-crops and flips training images instead (augment.py). Then the
    ImageNet mean/std. Inputs float32 [B, 3, 224, 224].
    """
    from torchvision import transforms

    root = data_dir(run, "imagenet", IMAGENET_LAYOUT)
    require("imagenet", root, ["train", "val"], IMAGENET_LAYOUT)
    train, val = image_folder(root / "train"), image_folder(root / "val")
    if train.classes != val.classes:  # else a label would mean different classes in the two
        raise DataLayoutError(
            f"imagenet: {root / 'val'} and {root / 'train'} have different class folders "
            f"(expected {IMAGENET_LAYOUT})"
        )
    plain = transforms.Compose([transforms.Resize(256), transforms.CenterCrop(224)])
    standardize = ImageStandardizer(IMAGENET_MEAN, IMAGENET_STD)  # ToTensor, then Normalize
    provenance = {"data_dir": str(root.resolve()), "train_images": len(train)}
    to_tensor = transforms.PILToTensor()  # uint8 [3, 224, 224]
    return Task(
        "imagenet",
        "classification",
        DatasetExamples(train, plain, to_tensor, standardize),
        DatasetExamples(val, plain, to_tensor, standardize),
        len(train.classes),
        (3, 224, 224),
        provenance=provenance,
    )


WIKITEXT2_LAYOUT = (
    "WikiText-2's wiki.train.tokens and wiki.valid.tokens (the wikitext-2/ folder of "
    "wikitext-2-v1.zip)"
)


def wikitext_tokens(path: Path) -> list[str]:
    """The words of each line and `<eos>` at its end, as PyTorch's word_language_model reads."""
    try:
        with path.open(encoding="utf-8") as lines:
            return [word for line in lines for word in [*line.split(), "<eos>"]]
    except UnicodeDecodeError as error:
        raise DataLayoutError(f"wikitext2: {path} is not UTF-8 text ({error})") from error


def wikitext_ids(path: Path, index: dict[str, int]) -> np.ndarray:
    tokens = wikitext_tokens(path)
    unknown = next((token for token in tokens if token not in index), None)
    if unknown is not None:
        raise DataLayoutError(
            f"wikitext2: {path} has the token {unknown!r}, which wiki.train.tokens lacks "
            "(WikiText marks rare words <unk> in every file)"
        )
    return np.array([index[token] for token in tokens], dtype=np.int64)


def load_wikitext2(run: dict) -> Task:
    """WikiText-2 at word level: train on wiki.train.tokens, validate on wiki.valid.tokens.

    The vocabulary is the sorted set of the training file's tokens (`<eos>` included); windows
    of `context` + 1 tokens (run key `context`) as for pydoc. Inputs and targets int64.
    """
    context = positive_int(run, "context", "wikitext2")
    root = data_dir(run, "wikitext2", WIKITEXT2_LAYOUT)
    train_file, valid_file = root / "wiki.train.tokens", root / "wiki.valid.tokens"
    require("wikitext2", root, [train_file.name, valid_file.name], WIKITEXT2_LAYOUT)
    vocabulary = sorted(set(wikitext_tokens(train_file)))
    index = {token: i for i, token in enumerate(vocabulary)}
    train = token_windows(wikitext_ids(train_file, index), context, f"wikitext2: {train_file}")
    valid = token_windows(wikitext_ids(valid_file, index), context, f"wikitext2: {valid_file}")
    with train_file.open("rb") as file:
        train_sha256 = hashlib.file_digest(file, "sha256").hexdigest()
    provenance = {
        "data_dir": str(root.resolve()),
        "train_sha256": train_sha256,
        "vocabulary_size": len(vocabulary),
    }
    return Task(
        "wikitext2",
        "language",
        numpy_examples(*train),
        numpy_examples(*valid),
        len(vocabulary),
        (context,),
        provenance=provenance,
    )


TASKS = {
    "cifar10": load_cifar10,
    "cifar100": load_cifar100,
    "imagenet": load_imagenet,
    "wikitext2": load_wikitext2,
}
