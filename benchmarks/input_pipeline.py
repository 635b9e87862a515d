"""Images per second of the ImageNet input path: in-process against loader workers.

    python benchmarks/input_pipeline.py --images 512 --repeats 3

ImageNet-format JPEGs of realistic size (500 x 375, smooth random scenes at quality 90, about
the size of an ILSVRC photo) in an ImageFolder tree, read as the `imagenet` task reads them with
`augment: standard` (decode, RandomResizedCrop(224), flip, normalize): minibatches of 64 built
one image at a time in the training process (`Task.batch`, the first wave's path), then by the
input pipeline (`pipeline.batches`) with 0, 1 and 2 loader workers. Printed: images/s of each
after its first batch (the workers start once a job; best of the repeats), the ratio to the
in-process rate, and the per-core rate that sizes the workers a GPU needs.
"""

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from nowrongturns.step import AUGMENT_TRAIN
from nowrongturns.tasks.augment import Draw
from nowrongturns.tasks.load import load_task
from nowrongturns.tasks.pipeline import Request, batches

BATCH = 64


def write_imagenet(root: Path, images: int, rng: np.random.Generator) -> None:
    """train/ and val/ ImageFolder trees of 500 x 375 JPEGs, two classes."""
    for split, count in (("train", images), ("val", 2)):
        for index in range(count):
            folder = root / split / ("n01440764", "n01443537")[index % 2]
            folder.mkdir(parents=True, exist_ok=True)
            coarse = rng.integers(0, 256, (12, 16, 3), dtype=np.uint8)
            scene = Image.fromarray(coarse).resize((500, 375), Image.Resampling.BICUBIC)
            grain = rng.normal(0, 12, (375, 500, 3))
            pixels = np.clip(np.asarray(scene) + grain, 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(folder / f"image_{index}.JPEG", quality=90)


def requests(count: int):
    order = torch.arange(count)
    return [
        Request(order[start : start + BATCH], Draw(AUGMENT_TRAIN, (start,)), tag=start)
        for start in range(0, count - BATCH + 1, BATCH)
    ]


def rate(make_batches, count: int) -> float:
    """Images/s after the first batch: the workers' start-up (once a job) left out."""
    stream = make_batches()
    next(stream)
    started = time.perf_counter()
    seen = sum(len(inputs) for _, inputs, _ in stream)
    assert seen == count - count % BATCH - BATCH
    return seen / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as folder:
        write_imagenet(Path(folder), args.images, np.random.default_rng(0))
        sizes = [p.stat().st_size for p in Path(folder, "train").rglob("*.JPEG")]
        task = load_task({"task": "imagenet", "data_dir": folder, "augment": "standard", "seed": 0})
        ways = {
            "in-process (Task.batch)": lambda: (
                (r.tag, *task.batch(r.indices, draw=r.draw)) for r in requests(args.images)
            ),
            **{
                f"pipeline, {n} worker(s)": (
                    lambda n=n: batches(task, requests(args.images), workers=n)
                )
                for n in (0, 1, 2)
            },
        }
        best = {name: 0.0 for name in ways}
        for _ in range(args.repeats):
            for name, make in ways.items():
                best[name] = max(best[name], rate(make, args.images))
    print(
        f"{args.images} JPEGs of 500 x 375 (mean {np.mean(sizes) / 1e3:.0f} kB), batches of "
        f"{BATCH}, augment standard, best of {args.repeats}, torch {torch.__version__}"
    )
    base = best["in-process (Task.batch)"]
    for name, images_per_second in best.items():
        print(f"{name:28s} {images_per_second:7.1f} images/s  {images_per_second / base:.2f}x")
    print(f"per loader core: {best['pipeline, 1 worker(s)']:.0f} images/s")


if __name__ == "__main__":
    main()
