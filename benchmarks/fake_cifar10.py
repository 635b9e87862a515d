"""A CIFAR-10 folder of random images, in torchvision's python format, for timings and tests.

    python benchmarks/fake_cifar10.py /tmp/cifar10 --train 50000 --test 10000

The `cifar10` task reads it as it reads the real release (and records `official_release: false`):
CIFAR-sized inputs where the real data cannot be had, as on a lent GPU machine with no network.
"""

import argparse
import pickle
from pathlib import Path

import numpy as np

LABEL_NAMES = ["airplane", "automobile", "bird", "cat", "deer"]
LABEL_NAMES += ["dog", "frog", "horse", "ship", "truck"]


def write_cifar10(root: Path, train: int, test: int, rng: np.random.Generator) -> Path:
    """cifar-10-batches-py/ under `root`: `train` images over the five data batches, `test` in the
    test batch. The official pickles come from Python 2, whose str keys torchvision's
    `pickle.load(encoding="latin1")` returns as str: so str keys here."""
    folder = Path(root) / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)
    per_batch = np.diff(np.linspace(0, train, 6).astype(int))
    counts = {f"data_batch_{i}": count for i, count in enumerate(per_batch, 1)}
    for name, count in (counts | {"test_batch": test}).items():
        batch = {
            "batch_label": name,
            "data": rng.integers(0, 256, (count, 3072), dtype=np.uint8),
            "labels": rng.integers(0, 10, count).tolist(),
            "filenames": [f"{name}_{i}.png" for i in range(count)],
        }
        (folder / name).write_bytes(pickle.dumps(batch))
    meta = {"label_names": LABEL_NAMES, "num_cases_per_batch": int(per_batch[0]), "num_vis": 3072}
    (folder / "batches.meta").write_bytes(pickle.dumps(meta))
    return folder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("root")
    parser.add_argument("--train", type=int, default=50000)
    parser.add_argument("--test", type=int, default=10000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    print(write_cifar10(args.root, args.train, args.test, np.random.default_rng(args.seed)))


if __name__ == "__main__":
    main()
