"""A small results directory laid out as the workflow lays it out (runs/, figures/, claims.csv),
made in-process by the stages' own functions: the tiny run in three seeds, in about 30 s. And a
counter of the files a block of code opens, from the kernel's inotify events, whatever library
opens them (h5py and pyarrow open files in C, beyond Python's audit hooks)."""

from __future__ import annotations

import contextlib
import ctypes
import os
import struct
from pathlib import Path

from helpers.runs import SCHEMA, TINY_BASE
from nowrongturns.config import expand_runs, validate_config

SEEDS = {"base": 0, "seed=1": 1, "seed=2": 2}
RUN_FIGURES = ["geometry"]  # one is enough to export, and each takes seconds
RESULTS_CONFIG = {
    "base": TINY_BASE,
    "ablations": {"seed": [1, 2]},
    "measure": {"samples": 3},
    "schedule": {"smooth": 3},
}


def make_results(root: Path) -> Path:
    """results/ of the tiny run with seeds 0, 1, 2: every run's trajectory, geometry (samples
    3, full batch, random labels, the update), schedule, bound, figures, and the claims."""
    import pandas as pd

    from nowrongturns.measure.stage import measure
    from nowrongturns.report.claims import write_claims
    from nowrongturns.report.figures import draw_run_figures
    from nowrongturns.schedule.stage import derive_schedule
    from nowrongturns.train.stage import train

    config = validate_config(RESULTS_CONFIG, SCHEMA)
    runs = expand_runs(config)
    assert set(runs) == set(SEEDS)
    results = root / "results"
    for name, run in runs.items():
        folder = results / "runs" / name
        trajectory = folder / "trajectory.h5"
        train(run, trajectory, device="cpu", run_name=name)
        measure(trajectory, folder / "geometry.parquet", name, samples=3, device="cpu")
        derive_schedule(
            folder / "geometry.parquet",
            trajectory,
            folder / "schedule.csv",
            folder / "schedule.json",
            folder / "bound.csv",
            folder / "cosine.json",
            smooth=3,
        )
        draw_run_figures(folder, results / "figures" / name, RUN_FIGURES)
    tables = {name: pd.read_parquet(results / "runs" / name / "geometry.parquet") for name in runs}
    schedules = [results / "runs" / name / "schedule.json" for name in runs]
    write_claims(tables, schedules, config, results / "claims.csv", results / "claims.html")
    return results


IN_OPEN, IN_ISDIR, IN_NONBLOCK = 0x20, 0x40000000, 0o4000
_EVENT = struct.Struct("iIII")  # wd, mask, cookie, len; then len bytes of name


@contextlib.contextmanager
def file_opens(folders):
    """Yield a list that receives, when the block ends, the path of every file (not folder)
    opened inside `folders` while it ran, by this process or any other."""
    libc = ctypes.CDLL(None, use_errno=True)
    descriptor = libc.inotify_init1(IN_NONBLOCK)
    assert descriptor >= 0, os.strerror(ctypes.get_errno())
    watched = {}
    try:
        for folder in folders:
            watch = libc.inotify_add_watch(descriptor, str(folder).encode(), IN_OPEN)
            assert watch >= 0, os.strerror(ctypes.get_errno())
            watched[watch] = Path(folder)
        opened: list[Path] = []
        yield opened
        while True:
            try:
                data = os.read(descriptor, 65536)
            except BlockingIOError:
                break
            offset = 0
            while offset < len(data):
                watch, mask, _, length = _EVENT.unpack_from(data, offset)
                name = data[offset + _EVENT.size : offset + _EVENT.size + length].rstrip(b"\0")
                offset += _EVENT.size + length
                if mask & IN_OPEN and not mask & IN_ISDIR and name:
                    opened.append(watched[watch] / name.decode())
    finally:
        os.close(descriptor)
