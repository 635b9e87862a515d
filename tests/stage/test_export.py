"""`nwt export tensorboard` and `nwt export mlflow`: what they write, read back with the trackers'
own readers (tbparse, TensorBoard's event reader, a real MLflow server) against the tables."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from helpers.results import SEEDS

import nowrongturns

NWT = Path(sys.executable).parent / "nwt"


def expected_metrics(run) -> dict[str, pd.Series]:
    """Metric name -> values by step, computed here from the run's tables and trajectory."""
    geometry, schedule = run.geometry, run.schedule.set_index("step")
    steps = run.trajectory.steps()
    expected = {"train/loss": steps["loss"], "train/lr": steps["lr"]}
    for source, rows in geometry.groupby("source"):
        for quantity in ("gamma", "rsi", "eb"):
            values = rows.groupby("step")[quantity]
            if source == "sampled":
                for label, q in (("median", 50), ("p10", 10), ("p90", 90)):
                    band = values.apply(lambda v, q=q: np.percentile(v, q))
                    expected[f"{quantity}/sampled_{label}"] = band
            else:
                expected[f"{quantity}/{source}"] = values.first()
    sampled = geometry[geometry["source"] == "sampled"].groupby("step")
    for control in ("z", "gamma_origin"):  # gamma_other is NaN: no seed sibling measured
        expected[f"controls/{control}_median"] = sampled[control].median()
    expected["geometry/dist"] = geometry.groupby("step")["dist"].first()
    for column in schedule.columns:
        if column.startswith("eta_") or column == "lr_used":
            expected[f"schedule/{column}"] = schedule[column]
    return expected


def assert_metrics_equal(read: dict[str, pd.Series], run, rel: float) -> None:
    expected = expected_metrics(run)
    assert set(read) == set(expected), set(read) ^ set(expected)
    for name, values in expected.items():
        assert list(read[name].index) == list(values.index), name
        np.testing.assert_allclose(read[name].to_numpy(), values.to_numpy(), rtol=rel, err_msg=name)


@pytest.mark.slow  # two exports, each importing torch, and the small results
def test_tensorboard_export_holds_every_metric_at_every_step(small_results, tmp_path):
    from tbparse import SummaryReader
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    logdir = tmp_path / "tensorboard"
    for _ in range(2):  # exporting again replaces each run's events, adds none
        command = [NWT, "export", "tensorboard", small_results, "--logdir", logdir]
        subprocess.run(command, check=True, timeout=300)
    assert sorted(path.name for path in logdir.iterdir()) == sorted(SEEDS)
    scalars = SummaryReader(logdir, extra_columns={"dir_name"}).scalars
    results = nowrongturns.open_results(small_results)
    for name in SEEDS:
        rows = scalars[scalars["dir_name"] == name]
        read = {tag: group.set_index("step")["value"] for tag, group in rows.groupby("tag")}
        assert_metrics_equal(read, results[name], rel=1e-6)  # stored as float32
        events = EventAccumulator(str(logdir / name), size_guidance={"images": 0})
        events.Reload()
        assert events.Tags()["images"] == ["figures/geometry"]
        image = events.Images("figures/geometry")[0]
        assert image.encoded_image_string.startswith(b"\x89PNG") and image.width > 500


def test_missing_extras_are_named(tmp_path):
    """Without the tracker's package the command fails in one line naming the extra."""
    for tracker, package, options in (
        ("tensorboard", "tensorboard", ["--logdir", str(tmp_path)]),
        ("mlflow", "mlflow", ["--tracking-uri", "http://127.0.0.1:9", "--experiment", "x"]),
    ):
        script = (
            f"import sys; sys.modules[{package!r}] = None\n"  # as if not installed
            "from nowrongturns.cli import main\n"
            f"main(['export', {tracker!r}, {str(tmp_path)!r}, *{options!r}])"
        )
        result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
        assert result.returncode == 1 and "Traceback" not in result.stderr
        assert f"pip install 'nowrongturns[{tracker}]'" in result.stderr.splitlines()[-1]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def mlflow_server(tmp_path):
    """A real `mlflow server` on 127.0.0.1 with a local store (SQLite, artifacts on disk),
    started for the test and stopped after it: its URI."""
    port = _free_port()
    store = tmp_path / "mlflow"
    store.mkdir()
    command = [Path(sys.executable).parent / "mlflow", "server", "--host", "127.0.0.1"]
    command += ["--port", str(port), "--workers", "1"]
    command += ["--backend-store-uri", f"sqlite:///{store / 'store.db'}"]
    command += ["--artifacts-destination", str(store / "artifacts")]
    log = (store / "server.log").open("w")
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}  # as export_time.py
    server = subprocess.Popen(
        command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, env=env
    )
    uri = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                urllib.request.urlopen(f"{uri}/health", timeout=2)
                break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError((store / "server.log").read_text()) from None
                time.sleep(0.5)
        yield uri
    finally:
        os.killpg(server.pid, signal.SIGTERM)  # the server and the workers it started
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()
        log.close()


@pytest.mark.slow
def test_mlflow_export_makes_one_run_per_run_and_updates_them(
    small_results, mlflow_server, tmp_path, record_property
):
    """One MLflow run per run with its params, metrics (equal to the tables, each value once)
    and artifacts; exported again, the same MLflow runs; a run changed since, logged anew in
    place of its old MLflow run."""
    from mlflow import MlflowClient

    results_copy = tmp_path / "results"
    shutil.copytree(small_results, results_copy)
    record = tmp_path / "mlflow.json"
    command = [NWT, "export", "mlflow", results_copy, "--tracking-uri", mlflow_server]
    command += ["--experiment", "tiny seeds", "--record", record]
    started = time.perf_counter()
    subprocess.run(command, check=True, timeout=300)
    first_export = time.perf_counter() - started
    first = json.loads(record.read_text())
    subprocess.run(command, check=True, timeout=300)
    assert json.loads(record.read_text()) == first and sorted(first) == sorted(SEEDS)

    client = MlflowClient(mlflow_server)
    experiment = client.get_experiment_by_name("tiny seeds")
    runs = client.search_runs([experiment.experiment_id])
    assert sorted(run.info.run_name for run in runs) == sorted(SEEDS)  # none twice
    results = nowrongturns.open_results(results_copy)
    for mlflow_run in runs:
        run = results[mlflow_run.info.run_name]
        assert mlflow_run.info.run_id == first[run.name]
        params = mlflow_run.data.params
        assert params["seed"] == str(run.config["seed"]) and params["checkpoint.every"] == "10"
        read = {}
        for name in mlflow_run.data.metrics:
            history = client.get_metric_history(mlflow_run.info.run_id, name)
            read[name] = pd.Series({point.step: point.value for point in history}).sort_index()
            assert len(history) == len(read[name]), f"{name}: a value logged twice"
        assert_metrics_equal(read, run, rel=1e-12)
        artifacts = {
            item.path
            for folder in ("tables", "figures")
            for item in client.list_artifacts(mlflow_run.info.run_id, folder)
        }
        assert artifacts == {
            "tables/geometry.parquet",
            "tables/schedule.csv",
            "tables/schedule.json",
            "tables/bound.csv",
            "figures/geometry.png",
        }

    bound = results_copy / "runs/seed=1/bound.csv"  # a run changed since: its bound redone
    bound.write_text(bound.read_text().replace("True", "False", 1))
    subprocess.run(command, check=True, timeout=300)
    third = json.loads(record.read_text())
    assert third["seed=1"] != first["seed=1"]
    assert {name: third[name] for name in ("base", "seed=2")} == {
        name: first[name] for name in ("base", "seed=2")
    }
    runs = client.search_runs([experiment.experiment_id])
    assert sorted(run.info.run_id for run in runs) == sorted(third.values())
    record_property("summary", f"mlflow export of 3 tiny runs: {first_export:.1f} s")
