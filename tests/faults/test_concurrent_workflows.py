"""Workflows started at once (issue 17): two on one directory, two sharing one output cache.

A train job is held at its start by a hook (a sitecustomize module on PYTHONPATH) until the
test lets it go, or until as many train jobs as it waits for have started: so the second
Snakemake really starts while the first one runs, and the two cached trainings really overlap.
"""

import os
import subprocess
import sys
import time
from pathlib import Path

from helpers.compare_results import assert_same_contents, hdf5_contents
from helpers.runs import TINY_BASE
from helpers.workflow import Workflow

from nowrongturns.trajectory.reader import TrajectoryReader

HOLD_HOOK = """
import os, sys, time
folder = os.environ.get("NWT_TEST_HOLD")
if folder and sys.argv[0].endswith("nwt") and sys.argv[1:2] == ["train"]:
    open(os.path.join(folder, f"started-{os.getpid()}"), "w").close()
    parties = int(os.environ["NWT_TEST_HOLD_PARTIES"])
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not os.path.exists(os.path.join(folder, "go")):
        if sum(name.startswith("started-") for name in os.listdir(folder)) >= parties:
            break
        time.sleep(0.05)
"""
TARGET = "results/runs/base/trajectory.h5"


def held_env(tmp_path: Path, parties: int, **more: str) -> tuple[dict, Path]:
    """The environment of a Snakemake whose train jobs wait, and the folder they wait in."""
    hooks, folder = tmp_path / "hooks", tmp_path / "hold"
    hooks.mkdir(exist_ok=True)
    folder.mkdir(exist_ok=True)
    (hooks / "sitecustomize.py").write_text(HOLD_HOOK)
    env = {
        **os.environ,
        "PYTHONPATH": str(hooks),
        "NWT_TEST_HOLD": str(folder),
        "NWT_TEST_HOLD_PARTIES": str(parties),
        **more,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
    }
    return env, folder


def start(flow: Workflow, env: dict, *args: str) -> subprocess.Popen:
    command = [sys.executable, "-m", "snakemake", "--cores", "1", TARGET, *args]
    return subprocess.Popen(
        command, cwd=flow.root, env=env, text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )


def wait_for(path_glob: Path, count: int, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while len(list(path_glob.parent.glob(path_glob.name))) < count:
        assert time.monotonic() < deadline, f"{count} of {path_glob} never appeared"
        time.sleep(0.05)


def test_a_second_snakemake_on_the_same_directory_stops_on_the_lock(tmp_path):
    flow = Workflow(tmp_path / "flow", {"base": TINY_BASE})
    env, folder = held_env(tmp_path, parties=2)  # one train job: held until "go"
    first = start(flow, env)
    try:
        wait_for(folder / "started-*", 1)  # the first Snakemake holds its lock, its job runs
        second = flow.snakemake(TARGET, check=False)
        output = second.stdout + second.stderr
        assert second.returncode != 0
        assert "LockException" in output and "Directory cannot be locked" in output, output
    finally:
        (folder / "go").touch()
        output, _ = first.communicate(timeout=300)
    assert first.returncode == 0, output
    with TrajectoryReader(flow.root / TARGET) as traj:
        assert traj.total_steps == 44


def test_two_workflows_sharing_an_output_cache_train_the_same_run_at_once(tmp_path):
    """docs/cluster.md#between-workflow-cache: both miss the cache, train at once, and store."""
    cache = tmp_path / "cache"
    cache.mkdir()
    env, folder = held_env(tmp_path, parties=2, SNAKEMAKE_OUTPUT_CACHE=str(cache))
    flows = [Workflow(tmp_path / name, {"base": TINY_BASE}) for name in ("first", "second")]
    # --cache last: it takes rule names, and would take the targets for some.
    running = [start(flow, env, "--cache") for flow in flows]
    outputs = [process.communicate(timeout=300)[0] for process in running]
    assert [process.returncode for process in running] == [0, 0], outputs
    assert len(list(folder.glob("started-*"))) == 2  # both trained: neither found it cached
    contents = []
    for flow in flows:
        trajectory = flow.root / TARGET
        assert trajectory.resolve().parent == cache  # stored, then linked from the cache
        assert "validation accuracy" in (flow.root / "results/logs/train/base.log").read_text()
        with TrajectoryReader(trajectory) as traj:  # complete and readable
            assert traj.total_steps == 44
            traj.weights(-1)
        contents.append(hdf5_contents(trajectory))
    assert_same_contents(*contents)
