"""The import stage: a trajectory from what a finished training left, for runs whose config has
`trajectory_from` instead of training.

    nwt import ckpts/*.pt --run '{"task": ..., "model": "mylab.nets:build", ...}' \
        --steps from_name --out results/runs/base/trajectory.h5
    nwt import recorded.h5 --run '{...}' --out results/runs/base/trajectory.h5

Checkpoints (checkpoint_files.py: .pt/.pth, safetensors, Lightning .ckpt, Hugging Face
checkpoint-N/ folders) go into a trajectory of origin "imported", in the order of their steps,
the model built by the run's model factory; it holds weights and buffers, no per-step column and
no optimizer state. A recorded trajectory (nowrongturns.Recorder) is copied with the workflow's
run config, the optimizer and batch the recording knew kept. Any bad input stops the stage with
its file named, and nothing is left under the final name.
"""

from __future__ import annotations

import glob
import json
import shutil
import sys
from pathlib import Path

import h5py
import numpy as np

from nowrongturns.models import build_model
from nowrongturns.record.checkpoint_files import (
    CheckpointError,
    matched,
    read_checkpoint,
    step_from_name,
)
from nowrongturns.tasks.load import load_task
from nowrongturns.trajectory.format import partial_path
from nowrongturns.trajectory.reader import TrajectoryReader
from nowrongturns.trajectory.state import flat_buffers, flat_parameters
from nowrongturns.trajectory.writer import TrajectoryWriter

# What a recording knows of its own training better than a workflow config does.
RECORDED_KEYS = ("optimizer", "optimizer_options", "lr", "weight_decay", "batch_size")
# What must agree between a recording and the workflow's run: what rebuilds model and data.
SAME_KEYS = ("task", "model")


def expand_sources(patterns: list[str]) -> list[str]:
    """Each pattern's matches (a glob) or the path itself, sorted, each once."""
    found = []
    for pattern in patterns:
        matches = sorted(glob.glob(pattern)) if glob.has_magic(pattern) else [pattern]
        if not matches:
            raise CheckpointError(f"{pattern}: no checkpoint matches")
        found.extend(match for match in matches if match not in found)
    return found


def ordered(paths: list[str], steps) -> list[tuple[int, str]]:
    """(step, path) by step: `steps` "from_name" or one step per path; a repeated step stops
    naming both files."""
    if steps == "from_name":
        steps = [step_from_name(path) for path in paths]
    elif len(steps) != len(paths):
        raise CheckpointError(f"{len(steps)} steps given for {len(paths)} checkpoints: {paths}")
    first_with = {}
    for step, path in zip(steps, paths):
        if step in first_with:
            raise CheckpointError(f"{path}: step {step} repeated (also {first_with[step]})")
        if step < 0:
            raise CheckpointError(f"{path}: step {step} is negative")
        first_with[step] = path
    return sorted(zip(steps, paths))


def import_checkpoints(run: dict, sources: list[str], out: str, steps="from_name") -> Path:
    """The trajectory of the checkpoints `sources` name (paths or globs), the model the run
    names; every checkpoint checked against the model before the file is renamed."""
    checkpoints = ordered(expand_sources(sources), steps)
    if len(checkpoints) < 2:
        raise CheckpointError(f"{sources}: at least two checkpoints make a path, found one")
    task = load_task(run)
    model = build_model(run, task)
    partial_path(out).unlink(missing_ok=True)  # nothing resumes an import
    writer = TrajectoryWriter(
        out,
        run,
        model,
        0,
        {},
        run.get("batch_size", 1),
        "cpu",
        task.provenance,
        origin="imported",
        step_columns=(),
    )
    try:
        for step, path in checkpoints:
            model.load_state_dict(matched(read_checkpoint(path), model, path))
            writer.append_checkpoint(
                step,
                weights=flat_parameters(model).float().numpy(),
                buffers=flat_buffers(model).numpy(),
                optimizer_state=np.zeros(0, np.float32),
                rng_states={},
            )
    except BaseException:
        writer.abandon()
        partial_path(out).unlink(missing_ok=True)
        raise
    return writer.finish(checkpoint_files=json.dumps([path for _, path in checkpoints]))


def import_recorded(run: dict, source: str, out: str) -> Path:
    """A recorded trajectory under `out`, its config the workflow's run but for RECORDED_KEYS;
    one whose model or task differs from the run's stops, naming the keys."""
    with TrajectoryReader(source) as traj:
        recorded, origin = traj.config, traj.origin
    if origin != "recorded":
        raise CheckpointError(f"{source}: a trajectory of origin {origin!r}, not a recording")
    differing = [key for key in SAME_KEYS if recorded.get(key) != run.get(key)]
    if differing:
        raise CheckpointError(
            f"{source}: recorded with "
            + ", ".join(f"{key} {recorded.get(key)!r}" for key in differing)
            + ", but the run says "
            + ", ".join(f"{key} {run.get(key)!r}" for key in differing)
        )
    kept = {key: recorded[key] for key in RECORDED_KEYS if key in recorded}
    overruled = {key: value for key, value in kept.items() if run.get(key) != value}
    if overruled:  # the workflow's claims table still says the config's (it reads the config)
        print(
            f"{source}: as recorded, not as the run says: "
            + ", ".join(
                f"{key} {value!r} (run: {run.get(key)!r})" for key, value in overruled.items()
            ),
            file=sys.stderr,
        )
    config = {**run, **kept}
    partial = partial_path(out)
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, partial)
    try:
        with h5py.File(partial, "r+") as file:
            file.attrs["config"] = json.dumps(config, sort_keys=True)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    partial.replace(out)
    return Path(out)


def import_trajectory(run: dict, sources: list[str], out: str, steps="from_name") -> Path:
    """A recorded trajectory (one .h5 source) or checkpoints, imported."""
    if len(sources) == 1 and Path(sources[0]).suffix == ".h5":
        return import_recorded(run, sources[0], out)
    return import_checkpoints(run, sources, out, steps)
