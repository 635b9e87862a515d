"""Two results/ folders compared output by output: trajectories by their HDF5 contents (every
dataset and attribute but the creation time), Parquet tables by their values and metadata, every
other file (CSV, JSON, HTML, figures) byte for byte. Logs and benchmarks, which hold times, are
left out. Used by the fault-injection suite, and to check that a change to the code changes no
output (a pure refactor):

    python tests/helpers/compare_results.py /tmp/before/results results
"""

from __future__ import annotations

import sys
from pathlib import Path

import h5py
import numpy as np
import pandas as pd


def hdf5_contents(path: Path) -> dict:
    """Every dataset and attribute of an HDF5 file, but the creation time."""
    found = {}
    with h5py.File(path) as f:
        found.update({f"@{k}": v for k, v in f.attrs.items() if k != "created"})
        f.visititems(
            lambda name, obj: (
                found.__setitem__(name, obj[()]) if isinstance(obj, h5py.Dataset) else None
            )
        )
    return found


def equal(a, b) -> bool:
    """Equal values, NaN equal to NaN (a NaN attribute, the validation accuracy of a regression)."""
    if isinstance(a, np.ndarray) and a.dtype == object:  # variable-length rows
        return len(a) == len(b) and all(equal(x, y) for x, y in zip(a, b))
    numeric = np.asarray(a).dtype.kind in "fc" and np.asarray(b).dtype.kind in "fc"
    return bool(np.array_equal(a, b, equal_nan=numeric))


def assert_same_contents(first: dict, second: dict) -> None:
    assert first.keys() == second.keys()
    for key in first:
        assert equal(first[key], second[key]), key


def outputs(results: Path) -> dict[str, Path]:
    """Every file under results/ but the logs and benchmarks (which hold times), by path."""
    found = {str(path.relative_to(results)): path for path in results.rglob("*") if path.is_file()}
    return {
        name: path
        for name, path in found.items()
        if name.split("/")[0] not in ("logs", "benchmarks") and name != "README.md"
    }


def same(path: Path, reference: Path) -> bool:
    if path.suffix == ".h5":
        try:
            assert_same_contents(hdf5_contents(path), hdf5_contents(reference))
        except AssertionError:
            return False
        return True
    if path.suffix == ".parquet":
        table, expected = pd.read_parquet(path), pd.read_parquet(reference)
        return table.equals(expected) and table.attrs == expected.attrs
    return path.read_bytes() == reference.read_bytes()


def compare(results: Path, reference: Path) -> tuple[dict[str, int], list[str]]:
    """(outputs compared per kind, what differs or is missing on either side)."""
    found, expected = outputs(results), outputs(reference)
    problems = [f"{name}: only in {reference}" for name in sorted(expected.keys() - found.keys())]
    problems += [f"{name}: only in {results}" for name in sorted(found.keys() - expected.keys())]
    counts: dict[str, int] = {}
    for name in sorted(found.keys() & expected.keys()):
        kind = Path(name).suffix.lstrip(".")
        counts[kind] = counts.get(kind, 0) + 1
        if not same(found[name], expected[name]):
            problems.append(f"{name}: differs")
    return counts, problems


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        sys.exit("usage: compare_results.py RESULTS REFERENCE_RESULTS")
    counts, problems = compare(Path(argv[0]), Path(argv[1]))
    summary = ", ".join(f"{count} {kind}" for kind, count in sorted(counts.items()))
    print(f"compared {sum(counts.values())} outputs ({summary})")
    for problem in problems:
        print(f"  {problem}")
    print("no differences" if not problems else f"{len(problems)} differences")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
