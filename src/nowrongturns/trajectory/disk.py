"""The trajectory file against a full disk: the room an append takes, HDF5's error for no room,
and which checkpoints a flush that failed half way left whole."""

from __future__ import annotations

import errno
import math

import h5py

# What HDF5 may allocate beside the rows of one append (B-tree nodes, heaps): room kept free.
METADATA_MARGIN = 1 << 20


def is_disk_full(error: Exception) -> bool:
    """An OSError of ENOSPC, or HDF5's RuntimeError that carries errno 28 in its message."""
    return getattr(error, "errno", None) == errno.ENOSPC or "errno = 28" in str(error)


def chunk_geometry(dataset: h5py.Dataset) -> tuple[int, int]:
    """(rows per chunk, bytes per chunk with fletcher32's 4) of a dataset grown along axis 0."""
    return dataset.chunks[0], math.prod(dataset.chunks) * dataset.dtype.itemsize + 4


def new_chunk_bytes(geometry: tuple[int, int], start: int, rows: int) -> int:
    """Bytes of the chunks that appending `rows` rows after row `start` allocates."""
    chunk_rows, chunk_bytes = geometry
    return (-(-(start + rows) // chunk_rows) - -(-start // chunk_rows)) * chunk_bytes


def whole_checkpoints(file: h5py.File) -> int:
    """How many checkpoints are whole: /checkpoints/step is written last, but a flush torn by a
    full disk can leave rows listed there whose space was allocated and never written."""
    count = len(file["checkpoints/step"])
    while count and not checkpoint_is_whole(file, count - 1):
        count -= 1
    return count


def checkpoint_is_whole(file: h5py.File, index: int) -> bool:
    """Whether each row of checkpoint `index` passes its checksum and is stored (not left to the
    fill value; its RNG states, never all zeros, are there), and so is each /steps chunk before
    its step."""
    try:
        rows = {dataset: dataset[index] for dataset in datasets(file["checkpoints"])}
    except OSError:  # a fletcher32 mismatch
        return False
    if not all(row.any() for dataset, row in rows.items() if "/rng/" in dataset.name):
        return False
    chunks = [(dataset, (index, 0)) for dataset, row in rows.items() if row.size and row.ndim]
    step = int(file["checkpoints/step"][index])
    chunks += [
        (dataset, (start,) + (0,) * (dataset.ndim - 1))
        for dataset in datasets(file["steps"])
        for start in range(0, step, dataset.chunks[0])
    ]
    return all(
        dataset.id.get_chunk_info_by_coord(at).byte_offset is not None for dataset, at in chunks
    )


def datasets(group: h5py.Group):
    """Every dataset below a group."""
    for item in group.values():
        if isinstance(item, h5py.Dataset):
            yield item
        else:
            yield from datasets(item)
