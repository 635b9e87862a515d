"""The reference's training recipes (docs/training-recipes.md): seeded augmentation, gradient
clipping and batch-size lr scaling, checked against what the trajectory stores.

Augmentation must not cost determinism: two runs, a killed and resumed run, dense replay and the
measure stage all rebuild the very minibatches the optimizer saw.
"""

import os
import signal
from pathlib import Path

import numpy as np
import pytest
import torch
from fake_cifar10 import write_cifar10
from helpers.compare_results import assert_same_contents, hdf5_contents
from helpers.datasets import write_noise_images
from helpers.runs import assert_rows_are_the_steps_taken, kill_hooks, nwt_train, stored, tiny_run

from nowrongturns.measure.stage import measure
from nowrongturns.optim.learning_rates import lr_schedule, peak_lr
from nowrongturns.replay.segments import replay_jobs, segment_steps
from nowrongturns.replay.stage import replay_segments
from nowrongturns.step import AUGMENT_TRAIN
from nowrongturns.tasks.augment import Draw, RandomCrop, counter_uniforms
from nowrongturns.tasks.load import load_task
from nowrongturns.train.stage import train


@pytest.fixture(scope="module")
def cifar_dir(tmp_path_factory) -> Path:
    """A tiny CIFAR-10 in the real on-disk format: 200 training images (160 train, 40
    validation after the 80/20 split), 20 test images."""
    root = tmp_path_factory.mktemp("cifar10")
    write_cifar10(root, train=200, test=20, rng=np.random.default_rng(0))
    return root


# Augmented runs on CIFAR-format files and on an embedded image task: 2 epochs each, the first
# steps checkpointed one by one, then every 5th.
AUGMENTED = {
    "cifar10": {"batch_size": 16, "checkpoint": {"dense_first": 4, "every": 5}},  # 10 steps/epoch
    "digits": {"batch_size": 64, "checkpoint": {"dense_first": 4, "every": 5}},  # 22 steps/epoch
}


def augmented_run(task: str, cifar_dir: Path, **changes) -> dict:
    data_dir = str(cifar_dir) if task == "cifar10" else ""
    return tiny_run(
        task=task, data_dir=data_dir, augment="standard", epochs=2, **AUGMENTED[task], **changes
    )


@pytest.mark.parametrize("task", list(AUGMENTED))
def test_augmented_runs_are_bit_identical_and_replay_exactly(task, cifar_dir, tmp_path):
    run = augmented_run(task, cifar_dir)
    first, second = tmp_path / "first.h5", tmp_path / "second.h5"
    train(run, first, device="cpu")
    train(run, second, device="cpu")
    assert_same_contents(hdf5_contents(first), hdf5_contents(second))
    # Augmentation is on: the train batch is not the unaugmented batch.
    augmented = load_task(run)
    plain = load_task({**run, "augment": "none"})
    batch = torch.arange(8)
    draw = Draw(AUGMENT_TRAIN, (0,))
    assert not torch.equal(augmented.batch(batch, draw=draw)[0], plain.batch(batch)[0])
    assert torch.equal(augmented.batch(batch)[0], plain.batch(batch)[0])  # no draw: plain
    # Every segment replays to its checkpoint bit for bit (replay_segments raises otherwise).
    for first_segment, last_segment in replay_jobs(segment_steps(first), 1):
        out = tmp_path / f"{first_segment}-{last_segment}.parquet"
        replay_segments(first, first_segment, last_segment, out, "r", device="cpu")


@pytest.mark.slow
@pytest.mark.parametrize("task", list(AUGMENTED))
def test_augmented_run_killed_mid_epoch_resumes_to_the_same_trajectory(task, cifar_dir, tmp_path):
    run = augmented_run(task, cifar_dir, optimizer="momentum")
    reference, killed = tmp_path / "reference.h5", tmp_path / "killed.h5"
    assert nwt_train(run, reference).returncode == 0
    hooks = kill_hooks(tmp_path / "hooks")
    steps_per_epoch = {"cifar10": 10, "digits": 22}[task]
    kill_at = steps_per_epoch + 3  # inside the second epoch, after checkpoint steps_per_epoch
    env = {**os.environ, "PYTHONPATH": str(hooks), "NWT_TEST_KILL_AT_BATCH": str(kill_at)}
    result = nwt_train(run, killed, env)
    assert result.returncode == -signal.SIGKILL
    assert not killed.exists() and killed.with_name("killed.h5.partial").exists()
    resumed = nwt_train(run, killed)
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming from the checkpoint at step" in resumed.stderr
    assert_same_contents(hdf5_contents(killed), hdf5_contents(reference))


@pytest.mark.parametrize("task", list(AUGMENTED))
def test_train_batch_gradient_is_the_step_plain_sgd_took(task, cifar_dir, tmp_path):
    run = augmented_run(task, cifar_dir, optimizer="sgd")
    trajectory = tmp_path / "trajectory.h5"
    train(run, trajectory, device="cpu")
    table = measure(
        trajectory,
        tmp_path / "geometry.parquet",
        "r",
        samples=1,
        full_batch=True,
        random_labels=True,
        device="cpu",
    )
    assert_rows_are_the_steps_taken(table, trajectory, "train_batch")


def test_clipped_updates_are_the_steps_taken(tmp_path):
    """With a threshold below most gradient norms: the update rows are the steps the stored
    weights took, and the clip factor is below 1 exactly where the norm exceeded the threshold,
    where it is threshold / norm."""
    threshold = 1.0
    run = tiny_run(
        optimizer="momentum",
        clip_grad_norm=threshold,
        epochs=2,
        checkpoint={"dense_first": 6, "every": 10},
    )
    trajectory = tmp_path / "trajectory.h5"
    train(run, trajectory, device="cpu")
    saved = stored(trajectory)
    clipped = saved["grad_norm"] > threshold
    assert clipped.mean() > 0.5  # most steps clip
    assert not clipped.all()  # and some do not
    assert np.array_equal(saved["clip_factor"] < 1, clipped)
    np.testing.assert_allclose(
        saved["clip_factor"][clipped], threshold / saved["grad_norm"][clipped], rtol=1e-5
    )
    assert (saved["clip_factor"][~clipped] == 1).all()
    table = measure(
        trajectory,
        tmp_path / "geometry.parquet",
        "r",
        samples=1,
        full_batch=False,
        random_labels=False,
        device="cpu",
    )
    assert_rows_are_the_steps_taken(table, trajectory, "update")
    # The update is the clipped gradient: shorter than the train batch's where it clipped.
    rows = table.set_index(["source", "step"])["grad_norm"]
    step = int(np.argmax(clipped))
    assert rows["update", step] < rows["train_batch", step]


@pytest.mark.parametrize(
    ("rule", "batch_size", "expected"),
    [("sqrt", 256, 0.01), ("sqrt", 64, 0.005), ("linear", 512, 0.04), ("none", 512, 0.005)],
)
def test_lr_scales_with_the_batch_size(rule, batch_size, expected):
    run = tiny_run(
        lr=0.005, batch_size=batch_size, lr_scaling={"rule": rule, "reference_batch_size": 64}
    )
    assert peak_lr(run) == pytest.approx(expected)
    assert lr_schedule(run, 10) == pytest.approx(np.full(10, expected))


def test_augmentation_of_a_position_is_drawn_alone():
    """Position j's uniforms do not depend on which other positions are drawn, nor on order."""
    key = (7, 3, 0, 12)
    everything = counter_uniforms(key, np.arange(100), 2)
    some = counter_uniforms(key, np.array([57, 3, 99]), 2)
    assert np.array_equal(some, everything[[57, 3, 99]])
    assert 0 <= everything.min() and everything.max() < 1
    assert not np.array_equal(counter_uniforms((7, 3, 0, 13), np.arange(100), 2), everything)
    assert abs(everything.mean() - 0.5) < 0.1


def test_random_crop_is_torchvisions_crop_of_the_padded_image():
    from torchvision.transforms import functional as TF

    images = torch.randint(0, 256, (5, 3, 32, 32), dtype=torch.uint8)
    uniforms = torch.from_numpy(counter_uniforms((0,), np.arange(5), 2))
    cropped, _ = RandomCrop(4).batch(images, torch.zeros(5), uniforms)
    offsets = (uniforms * 9).long()
    for image, crop, (top, left) in zip(images, cropped, offsets.tolist()):
        expected = TF.crop(TF.pad(image, 4), top, left, 32, 32)
        assert torch.equal(crop, expected)


def test_imagenet_standard_is_a_seeded_resized_crop_and_flip(tmp_path):
    rng = np.random.default_rng(0)
    write_noise_images(tmp_path / "train", 3, rng)
    write_noise_images(tmp_path / "val", 1, rng)
    run = tiny_run(task="imagenet", data_dir=str(tmp_path), augment="standard")
    task, plain = load_task(run), load_task({**run, "augment": "none"})
    indices = torch.arange(6)
    first = task.batch(indices, draw=Draw(AUGMENT_TRAIN, (3,)))[0]
    assert first.shape == (6, 3, 224, 224)
    assert torch.equal(first, task.batch(indices, draw=Draw(AUGMENT_TRAIN, (3,)))[0])
    assert not torch.equal(first, task.batch(indices, draw=Draw(AUGMENT_TRAIN, (4,)))[0])
    assert not torch.equal(first, plain.batch(indices)[0])
    # Position j's crop is its own: drawn alone, as a loader worker or a DDP shard draws it.
    alone = task.batch(indices[4:5], draw=Draw(AUGMENT_TRAIN, (3,), torch.tensor([4])))[0]
    assert torch.equal(alone[0], first[4])
    validation = torch.arange(2)
    assert torch.equal(
        task.batch(validation, "validation")[0], plain.batch(validation, "validation")[0]
    )


@pytest.mark.parametrize(("height", "width"), [(375, 500), (500, 80), (60, 400)])
def test_resized_crop_boxes_are_those_torchvision_allows(height, width):
    from nowrongturns.tasks.augment import ResizedCropFlip

    crop = ResizedCropFlip(224)
    for uniforms in counter_uniforms((1,), np.arange(200), crop.draws):
        top, left, box_height, box_width = crop.box(height, width, uniforms)
        assert 0 <= top and top + box_height <= height and 0 <= left and left + box_width <= width
        area = box_height * box_width / (height * width)
        ratio = box_width / box_height
        fallback = (top, left) == ((height - box_height) // 2, (width - box_width) // 2)
        assert fallback or (0.07 <= area <= 1.01 and 0.74 <= ratio <= 1.36)
