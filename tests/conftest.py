"""The fixtures every test folder shares (the helpers they use are in tests/helpers), the `slow`
marker of whole folders, and the lines a test leaves for the end of the session's report."""

from __future__ import annotations

import copy
import os

import pytest
from helpers import debian, slurm
from helpers.results import make_results
from helpers.runs import SCHEMA, TINY_WORKFLOW_CONFIG, tiny_run
from helpers.workflow import Workflow

from nowrongturns.config import expand_runs, validate_config

# Every test of these folders runs real workflows, clusters or fault campaigns: minutes in all.
SLOW_FOLDERS = ("workflow", "cluster", "faults", "fuzz")
# A test's lines for the end of the session's report (the fault-injection suite's counts), given
# as `record_property("summary", line)`: properties reach the controller from xdist's workers.
SUMMARY_PROPERTY = "summary"
_summary: list[str] = []


# Session fixtures that are made once per test process and must not be made twice at once (one
# Slurm on the machine) or cost minutes each time: their tests share one xdist worker.
ONE_WORKER_FIXTURES = ("slurm_cluster", "finished_workflow", "default_run", "small_results")


@pytest.hookimpl(tryfirst=True)  # before xdist reads the groups
def pytest_collection_modifyitems(items) -> None:
    # The slow folders' tests first (a stable sort: each keeps its order): xdist hands out the
    # tests without a group in this order, and a minute-long workflow test handed out last
    # leaves the other worker idle at the end.
    items.sort(key=lambda item: item.path.parent.name not in SLOW_FOLDERS)
    for item in items:
        if item.path.parent.name in SLOW_FOLDERS:
            item.add_marker(pytest.mark.slow)
        for fixture in ONE_WORKER_FIXTURES:
            if fixture in getattr(item, "fixturenames", ()):
                item.add_marker(pytest.mark.xdist_group(fixture))


def pytest_configure(config) -> None:
    if not hasattr(config, "workerinput"):  # once a session: in xdist's controller
        slurm.remove_stale_configs()
    # xdist's workers share the cores: torch in each takes its share, not all of them. So do the
    # processes a test starts (an `nwt` command without --threads, a script, a notebook kernel):
    # torch and OpenBLAS read OMP_NUM_THREADS. A process of 2 threads on 2 cores that the other
    # worker keeps busy runs 5 to 50 times slower than with 1 (each parallel region waits for the
    # thread that is not scheduled), which is no test of anything.
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if workers > 1:
        threads = max(1, (os.cpu_count() or 1) // workers)
        os.environ.setdefault("OMP_NUM_THREADS", str(threads))
        import torch

        torch.set_num_threads(threads)


def pytest_runtest_logreport(report) -> None:
    if report.when == "call":
        _summary.extend(value for name, value in report.user_properties if name == SUMMARY_PROPERTY)


def pytest_terminal_summary(terminalreporter) -> None:
    for line in _summary:
        terminalreporter.write_line(line)


@pytest.fixture(scope="session")
def trained(tmp_path_factory):
    """Train and measure a run once per session: (run config, trajectory path, geometry path)."""
    from nowrongturns.measure.stage import measure
    from nowrongturns.train.stage import train

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
    from nowrongturns.measure.stage import measure
    from nowrongturns.train.stage import train

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


@pytest.fixture(scope="session")
def small_results(tmp_path_factory):
    """A results directory as the workflow lays it out, of the tiny run in seeds 0, 1, 2 (the
    results API, the exporters, the notebook tutorial): its path. Tests only read it, but for the
    tutorial's figures (figures/tutorial/)."""
    return make_results(tmp_path_factory.mktemp("small"))


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
    """A real single-node Slurm with accounting (tests/helpers/slurm.py), installed if missing,
    started for the session and stopped after it."""
    debian.ensure_debian_packages(debian.SLURM_PACKAGES)
    if os.geteuid() != 0:
        debian.skip_outside_ci("a Slurm cluster of its own needs root, to run slurmd's jobs")
    if slurm.foreign_config():
        debian.skip_outside_ci(f"{slurm.foreign_config()} is this machine's own Slurm config")
    cluster = slurm.SlurmCluster()
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()
