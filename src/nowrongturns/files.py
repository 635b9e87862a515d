"""Writing outputs so that a killed job never leaves a file that looks finished."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path


@contextlib.contextmanager
def written(path: str | Path):
    """Yield a temporary path beside `path`; rename it to `path` only if the block succeeds.

    with written("geometry.parquet") as tmp:
        table.to_parquet(tmp)
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{path.suffix}")  # keep the suffix: writers look at it
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
