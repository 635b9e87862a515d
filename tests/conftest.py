"""Shared fixtures: a tiny run config, trajectories trained from it, and a workflow copy to run."""

from __future__ import annotations

import copy
import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
import pytest
import slurm
import yaml
from debian import ensure_debian_packages, skip_outside_ci

from nowrongturns.config import expand_runs, validate_config

REPO = Path(__file__).resolve().parents[1]
SCHEMA = REPO / "workflow/schemas/config.schema.yaml"
# Lines a test leaves for the end of the session's report (the fault-injection suite's counts),
# shown whatever pytest's capture and -r options.
TERMINAL_SUMMARY: list[str] = []


def pytest_terminal_summary(terminalreporter) -> None:
    for line in TERMINAL_SUMMARY:
        terminalreporter.write_line(line)

# A run that trains in about a second: 44 steps, checkpoints 0, 1, 2, 10, 20, 30, 40, 44.
TINY_BASE = {
    "task": "digits",
    "model": "cnn",
    "width": 4,
    "lr": 0.05,
    "batch_size": 32,
    "epochs": 1,
    "seed": 0,
    "checkpoint": {"dense_first": 3, "every": 10},
}
# ... with every other run key at its schema default, as the workflow passes it to `nwt train`.
TINY_RUN = expand_runs(validate_config({"base": TINY_BASE}, SCHEMA))["base"]

# The workflow's tiny config, a few seconds per job: base and seed=1, and a contrasting example,
# Rosenbrock's valley (2000 steps of a 2-D point, 2 s; gamma < 0 at every other one of the first).
TINY_WORKFLOW_CONFIG = {
    "base": TINY_BASE,
    "ablations": {"seed": [1]},
    "runs": {
        "rosenbrock": {
            "task": "rosenbrock",
            "model": "point",
            "lr": 0.001,
            "batch_size": 1,
            "epochs": 20,
            "checkpoint": {"dense_first": 10, "every": 500},
        }
    },
    "measure": {"samples": 2},
    "schedule": {"smooth": 3},
}


# A sitecustomize module (on PYTHONPATH) that SIGKILLs its process inside the Nth call of
# Task.batch (NWT_TEST_KILL_AT_BATCH=N: a step inside an epoch), in any process, or only in the
# torchrun rank NWT_TEST_KILL_RANK where that is set.
KILL_AT_BATCH_HOOK = """
import os, signal
at = int(os.environ.get("NWT_TEST_KILL_AT_BATCH", "0"))
rank = os.environ.get("NWT_TEST_KILL_RANK")
if at and rank in (None, os.environ.get("RANK")):
    from nowrongturns import data
    batch, calls = data.Task.batch, [0]
    def counting_batch(self, *args, **kwargs):
        calls[0] += 1
        if calls[0] == at:
            os.kill(os.getpid(), signal.SIGKILL)
        return batch(self, *args, **kwargs)
    data.Task.batch = counting_batch
"""


def kill_hooks(folder: Path) -> Path:
    """A folder holding KILL_AT_BATCH_HOOK as sitecustomize.py, for PYTHONPATH."""
    folder.mkdir()
    (folder / "sitecustomize.py").write_text(KILL_AT_BATCH_HOOK)
    return folder


def tiny_run(**changes) -> dict:
    run = copy.deepcopy(TINY_RUN)
    run.update(changes)
    return run


@pytest.fixture(scope="session")
def trained(tmp_path_factory):
    """Train and measure a run once per session: (run config, trajectory path, geometry path)."""
    from nowrongturns.geometry import measure
    from nowrongturns.train import train

    cache = {}

    def get(**changes):
        key = repr(sorted(changes.items()))
        if key not in cache:
            run = tiny_run(**changes)
            folder = tmp_path_factory.mktemp("run")
            trajectory, geometry = folder / "trajectory.h5", folder / "geometry.parquet"
            train(run, trajectory, device="cpu", run_name="tiny")
            measure(
                trajectory,
                geometry,
                run_name="tiny",
                samples=3,
                full_batch=True,
                random_labels=True,
                device="cpu",
            )
            cache[key] = run, trajectory, geometry
        return cache[key]

    return get


@pytest.fixture(scope="session")
def default_run(tmp_path_factory):
    """The default config's base run (digits CNN, 440 steps) trained and measured as the workflow
    does with the default measure settings but the full batch: (trajectory, geometry table)."""
    from nowrongturns.geometry import measure
    from nowrongturns.train import train

    folder = tmp_path_factory.mktemp("default")
    run = expand_runs(validate_config({}, SCHEMA))["base"]
    train(run, folder / "trajectory.h5", device="cpu")
    table = measure(
        folder / "trajectory.h5",
        folder / "geometry.parquet",
        "base",
        samples=8,
        full_batch=False,
        random_labels=True,
        device="cpu",
    )
    return folder / "trajectory.h5", table


def corrupted_copy(trajectory: Path, copy: Path, checkpoint: int) -> Path:
    """A copy of a trajectory with bytes flipped inside one checkpoint's weights."""
    copy.write_bytes(trajectory.read_bytes())
    with h5py.File(copy, "r") as f:
        chunk = f["checkpoints/weights"].id.get_chunk_info(checkpoint)
    data = bytearray(copy.read_bytes())
    data[chunk.byte_offset + 8 : chunk.byte_offset + 12] = b"\xff\xff\xff\xff"
    copy.write_bytes(bytes(data))
    return copy


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


def assert_same_contents(first: dict, second: dict) -> None:
    assert first.keys() == second.keys()
    for key in first:
        a, b = first[key], second[key]
        if isinstance(a, np.ndarray) and a.dtype == object:  # variable-length rows
            assert all(np.array_equal(x, y) for x, y in zip(a, b)), key
        else:
            assert np.array_equal(a, b), key


# Training as the workflow runs it, and what the stored weights say each step was.


def nwt_train(run: dict, out: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    command = [Path(sys.executable).parent / "nwt", "train", "--run", json.dumps(run)]
    command += ["--out", out, "--device", "cpu", "--threads", "1"]
    return subprocess.run(command, env=env, capture_output=True, text=True)


def stored(trajectory: Path) -> dict:
    with h5py.File(trajectory) as f:
        return {
            "checkpoint_steps": f["checkpoints/step"][:],
            "weights": f["checkpoints/weights"][:].astype(np.float64),
            "lr": f["steps/lr"][:],
            "grad_norm": f["steps/grad_norm"][:],
            "clip_factor": f["steps/clip_factor"][:],
        }


def stepped_directions(trajectory: Path):
    """(step, d_t = (w_t - w_{t+1}) / lr_t, w_t - w*) wherever steps t and t + 1 are both
    checkpoints, from the stored weights alone."""
    saved = stored(trajectory)
    steps, weights = saved["checkpoint_steps"], saved["weights"]
    for index in range(len(steps) - 2):  # w_{T-1} - w* is the last step itself
        if steps[index + 1] == steps[index] + 1:
            step = int(steps[index])
            direction = (weights[index] - weights[index + 1]) / saved["lr"][step]
            yield step, direction, weights[index] - weights[-1]


def assert_rows_are_the_steps_taken(table, trajectory: Path, source: str) -> None:
    """The `source` rows' norm and dot product with w_t - w* are those of the step the stored
    weights took, to 1e-5 relative, at every pair of consecutive checkpoints."""
    rows = table[table["source"] == source].set_index("step")
    checked = 0
    for step, direction, to_final in stepped_directions(trajectory):
        row = rows.loc[step]
        assert row["grad_norm"] == pytest.approx(np.linalg.norm(direction), rel=1e-5), step
        assert row["dot"] == pytest.approx(direction @ to_final, rel=1e-5), step
        checked += 1
    assert checked >= 3


@dataclass(frozen=True)
class PlannedJob:
    """A job as Snakemake's dry run lists it."""

    rule: str
    run: str  # the wildcard `run`, "" for a rule without it
    resources: dict[str, str]  # as printed: {"gpu": "1", "mem_mb": "2000", ...}


class Workflow:
    """A copy of the workflow in a temporary directory, run with the real snakemake."""

    def __init__(self, root: Path, config: dict):
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        shutil.copy(REPO / "Snakefile", root)
        shutil.copytree(REPO / "workflow", root / "workflow")
        self.write_config("config.yaml", config)

    def write_config(self, name: str, config: dict) -> Path:
        path = self.root / name
        path.write_text(yaml.safe_dump(config))
        return path

    def snakemake(
        self,
        *args: str,
        check: bool = True,
        cores: int | None = 2,
        env: dict[str, str] | None = None,
        timeout: int = 600,
    ) -> subprocess.CompletedProcess:
        """Run snakemake here, under a hard `timeout` that ends it and all it started.

        `cores=None` leaves --cores out (a cluster run, where the profile sets --jobs)."""
        command = [sys.executable, "-m", "snakemake"]
        if cores is not None:
            command += ["--cores", str(cores)]
        command += args
        # The rules call `nwt`: find it beside this interpreter even if the venv is not activated.
        env = dict(os.environ if env is None else env)
        env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
        # SIGTERM first (Snakemake then cancels its cluster jobs), SIGKILL 30 s later.
        limited = ["timeout", "--kill-after=30", str(timeout), *command]
        result = subprocess.run(
            limited, cwd=self.root, env=env, capture_output=True, text=True, timeout=timeout + 60
        )
        if result.returncode == 124:
            raise AssertionError(
                f"{' '.join(command)} ran past {timeout} s:\n{result.stdout}\n{result.stderr}"
            )
        if check and result.returncode != 0:
            raise AssertionError(f"{' '.join(command)} failed:\n{result.stdout}\n{result.stderr}")
        return result

    def dry_run(self, *args: str, **options) -> list[PlannedJob]:
        """Every job a dry run plans, read from Snakemake's own dry-run output; its `run` is the
        run, or the factor of an ablation figure, or "" for a job over every run."""
        output = self.snakemake("--dry-run", *args, **options).stdout
        jobs = []
        for block in re.split(r"\n(?=(?:local)?(?:rule|checkpoint) \w+:)", output):
            rule = re.match(r"(?:local)?(?:rule|checkpoint) (\w+):", block)
            if rule and rule.group(1) != "all":
                run = re.search(r"wildcards: (?:run|factor)=([^,\s]+)", block)
                resources = re.search(r"resources: (.*)", block)
                jobs.append(
                    PlannedJob(
                        rule.group(1),
                        run.group(1) if run else "",
                        dict(item.split("=", 1) for item in resources.group(1).split(", ")),
                    )
                )
        return jobs

    def planned_jobs(self, *args: str, **options) -> set[tuple[str, str]]:
        """(rule, run) of every job a dry run plans."""
        return {(job.rule, job.run) for job in self.dry_run(*args, **options)}


@pytest.fixture
def workflow(tmp_path) -> Workflow:
    return Workflow(tmp_path, copy.deepcopy(TINY_WORKFLOW_CONFIG))


@pytest.fixture(scope="session")
def finished_workflow(tmp_path_factory) -> Workflow:
    """The tiny workflow, run to the end once per session (the workflow and report tests)."""
    flow = Workflow(tmp_path_factory.mktemp("workflow"), copy.deepcopy(TINY_WORKFLOW_CONFIG))
    flow.snakemake()
    return flow


@pytest.fixture(scope="session")
def slurm_cluster():
    """A real single-node Slurm with accounting (tests/slurm.py), installed if missing, started
    for the session and stopped after it."""
    ensure_debian_packages(slurm.PACKAGES)
    if os.geteuid() != 0:
        skip_outside_ci("a Slurm cluster of its own needs root, to run slurmd's jobs")
    if slurm.foreign_config():
        skip_outside_ci(f"{slurm.foreign_config()} is this machine's own Slurm config")
    cluster = slurm.SlurmCluster()
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()
