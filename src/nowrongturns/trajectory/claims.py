"""What a trajectory file claims, checked before the reader allocates anything for it: that the
path is an HDF5 file at all, that each dataset the stages read is there with its kind of values,
that its declared shape is backed by bytes the file stores, that the shapes agree with each other
and with `param_count`, and (where the run's task is counted exactly, config/sizes.py) with the
model and the steps its config describes. An HDF5 dataset may declare any shape without writing
it: a 785 kB file can claim 10^11 parameters, and reading its row would allocate 373 GiB.

    check_path(path)                      # before h5py opens it
    check_claims(file, path, config)      # after the attributes are read
"""

from __future__ import annotations

import math
from pathlib import Path

import h5py
import numpy as np

from nowrongturns.config import LOCAL_TASKS, sizes
from nowrongturns.trajectory.format import STEP_COLUMNS, TrajectoryError

HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
# deflate's largest ratio: no compressed dataset can hold more than this many bytes per stored one.
MAX_COMPRESSION = 1032
# The kind of values (numpy dtype.kind) of each dataset below /checkpoints: 'f' floats, 'u'
# unsigned bytes (the RNG states), 'i' integers.
CHECKPOINT_KINDS = {"step": "i", "weights": "f", "buffers": "f", "optimizer": "f"}


def check_path(path: Path) -> None:
    """Name what a path is when it is not a trajectory, rather than HDF5's error for it."""
    if not path.exists():
        raise TrajectoryError(f"{path}: no such file")
    if path.is_dir():
        raise TrajectoryError(f"{path}: is a directory, not a trajectory file")
    with path.open("rb") as handle:
        head = handle.read(8)
    if not head:
        raise TrajectoryError(f"{path}: is an empty file (0 bytes), not a trajectory")
    if head.startswith(b"PAR1"):
        raise TrajectoryError(f"{path}: is a Parquet file (a table), not a trajectory (HDF5)")
    # HDF5 puts its signature at 0, or at 512, 1024, ... after a user block.
    if head != HDF5_SIGNATURE and not _signature_after_user_block(path):
        raise TrajectoryError(f"{path}: is not an HDF5 file, so not a trajectory")


def _signature_after_user_block(path: Path) -> bool:
    size, offset = path.stat().st_size, 512
    with path.open("rb") as handle:
        while offset + 8 <= size:
            handle.seek(offset)
            if handle.read(8) == HDF5_SIGNATURE:
                return True
            offset *= 2
    return False


def dataset(file: h5py.File, path: Path, name: str, kind: str, ndim: int) -> h5py.Dataset:
    """The dataset `name`, there, with values of `kind` in `ndim` dimensions, and no more
    values claimed than the file stores for it."""
    item = file.get(name)
    if not isinstance(item, h5py.Dataset):
        found = "nothing" if item is None else type(item).__name__.lower()
        raise TrajectoryError(f"{path}: /{name} is {found}, not a dataset")
    if item.dtype.kind != kind and not (kind == "i" and item.dtype.kind == "u"):
        raise TrajectoryError(f"{path}: /{name} holds {item.dtype}, not {_KIND_NAMES[kind]}")
    if item.ndim != ndim:
        raise TrajectoryError(f"{path}: /{name} has shape {item.shape}, not {ndim} dimensions")
    claimed = math.prod(item.shape) * item.dtype.itemsize
    stored = item.id.get_storage_size()
    if claimed > stored * (MAX_COMPRESSION if item.compression else 1):
        raise TrajectoryError(
            f"{path}: /{name} claims shape {item.shape} ({claimed:,} bytes) but the file stores "
            f"{stored:,} bytes for it; refused before reading"
        )
    return item


_KIND_NAMES = {"f": "floats", "i": "integers", "u": "bytes"}


def check_claims(
    file: h5py.File, path: Path, param_count: int, config: dict, version: int, step_columns
):
    """Every dataset the stages read (of the per-step ones, those the file says it holds),
    against each other and the run's config; returns the checkpoint steps, read once their
    size is known to be real."""
    steps = dataset(file, path, "checkpoints/step", "i", 1)
    count = steps.shape[0]
    if count == 0:
        raise TrajectoryError(f"{path}: /checkpoints/step is empty: no checkpoint to read")
    rows = {
        name: dataset(file, path, f"checkpoints/{name}", kind, 2)
        for name, kind in CHECKPOINT_KINDS.items()
        if name != "step"
    }
    rng = file.get("checkpoints/rng")
    if not isinstance(rng, h5py.Group):
        raise TrajectoryError(f"{path}: /checkpoints/rng is missing (the RNG states)")
    rows |= {f"rng/{name}": dataset(file, path, f"checkpoints/rng/{name}", "u", 2) for name in rng}
    for name, rows_dataset in rows.items():
        if rows_dataset.shape[0] < count:
            raise TrajectoryError(
                f"{path}: /checkpoints/{name} has {rows_dataset.shape[0]} rows for the {count} "
                "checkpoints /checkpoints/step lists"
            )
    width = rows["weights"].shape[1]
    if width != param_count:
        raise TrajectoryError(
            f"{path}: attribute param_count = {param_count} but /checkpoints/weights rows hold "
            f"{width} values"
        )
    _check_parameter_shapes(file, path, param_count)
    step_count = _check_step_columns(file, path, version, config, step_columns)
    checkpoint_steps = steps[:]
    if (np.diff(checkpoint_steps) <= 0).any() or checkpoint_steps[0] < 0:
        raise TrajectoryError(f"{path}: /checkpoints/step is not increasing from 0 or more")
    if step_count is not None and checkpoint_steps[-1] > step_count:
        raise TrajectoryError(
            f"{path}: /checkpoints/step reaches step {checkpoint_steps[-1]}, past the "
            f"{step_count} rows of /steps"
        )
    _check_against_config(path, config, param_count, step_count)
    return checkpoint_steps


def _check_parameter_shapes(file: h5py.File, path: Path, param_count: int) -> None:
    shapes = file.get("params/shapes")
    if not isinstance(shapes, h5py.Dataset) or shapes.ndim != 1 or shapes.dtype.kind != "O":
        raise TrajectoryError(f"{path}: /params/shapes is missing or not a list of shapes")
    if shapes.shape[0] > max(param_count, 1) or shapes.id.get_storage_size() < shapes.shape[0]:
        raise TrajectoryError(f"{path}: /params/shapes lists {shapes.shape[0]} tensors")
    try:
        total = sum(math.prod(int(side) for side in shape) for shape in shapes[:])
    except (OSError, ValueError, TypeError) as error:
        raise TrajectoryError(f"{path}: /params/shapes is unreadable ({error})") from None
    if total != param_count:
        raise TrajectoryError(
            f"{path}: /params/shapes add up to {total} parameters, not param_count = {param_count}"
        )


def _check_step_columns(
    file: h5py.File, path: Path, version: int, config: dict, step_columns
) -> int | None:
    """The number of /steps rows, the same in every column the file holds (None where it holds
    none: imported checkpoints)."""
    columns = [
        name
        for name in STEP_COLUMNS
        if name in step_columns and (version > 1 or name != "clip_factor")
    ]
    lengths = {
        name: dataset(file, path, f"steps/{name}", np.dtype(STEP_COLUMNS[name]).kind, 1).shape[0]
        for name in columns
    }
    if "batch_indices" in step_columns:
        indices = dataset(file, path, "steps/batch_indices", "i", 2)
        lengths["batch_indices"] = indices.shape[0]
        batch = config.get("batch_size")
        if isinstance(batch, int) and indices.shape[1] != batch:
            raise TrajectoryError(
                f"{path}: /steps/batch_indices rows hold {indices.shape[1]} examples, but the "
                f"config's batch_size is {batch}"
            )
    if len(set(lengths.values())) > 1:
        raise TrajectoryError(f"{path}: the /steps columns differ in length ({lengths})")
    return next(iter(lengths.values()), None)


def _check_against_config(path: Path, config: dict, param_count: int, step_count) -> None:
    """Where the run's task is counted exactly without its data (embedded, synthetic), the
    file's parameters and steps against those of the model and training its config names."""
    if config.get("model") not in sizes.MODELS:
        return  # a model of the user's own: known only by building it
    try:
        facts = sizes.task_facts(config)
        if config["task"] in LOCAL_TASKS or not facts.exact:
            return  # a local dataset's classes (and examples) are known only from its files
        params = sizes.state_sizes(config, facts)[0]
        planned = sizes.planned_trajectory(config)["steps"]
    except (KeyError, TypeError, ValueError, ZeroDivisionError):
        # A recorded or imported loop's config says only what its loop knew (a trained one's
        # was checked against the schema): its file is then held to its own shapes alone.
        return
    if param_count != params:
        raise TrajectoryError(
            f"{path}: attribute param_count = {param_count}, but the model its config names "
            f"({config['model']} on {config['task']}) has {params} parameters"
        )
    if step_count is not None and step_count > planned:
        raise TrajectoryError(
            f"{path}: /steps holds {step_count} steps, more than the {planned} its config trains"
        )
