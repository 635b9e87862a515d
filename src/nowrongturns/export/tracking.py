"""The results into MLflow: one MLflow run per workflow run, in an experiment the user names.

    nwt export mlflow results --tracking-uri http://127.0.0.1:5000 --experiment digits

Per run: the run config as params (nested keys dotted), the scalars of metrics.py batch-logged
(`log_batch`, as many values a call as MLflow takes), the run's tables and figures as artifacts.
An MLflow run is found again by its tags (the results directory's absolute path and the run's
name), so exporting the same results again makes no second MLflow run: one whose tables, figures
and config are unchanged is left as it is, a changed one is logged anew in place of the old. The
metrics carry the trajectory's creation time as their timestamp.
"""

from __future__ import annotations

import datetime
import hashlib
import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pandas as pd

from nowrongturns.export import MissingExtraError
from nowrongturns.export.metrics import run_metrics
from nowrongturns.results import open_results
from nowrongturns.results.folders import RUN_TABLES

# MLflow's limits on one log_batch call (mlflow.utils.validation).
ENTITIES_PER_CALL = 1000  # metrics, params and tags together
PARAMS_PER_CALL = 100
PARAM_VALUE_LENGTH = 6000
SOURCE_TAG = "nowrongturns.results"
RUN_TAG = "nowrongturns.run"
FINGERPRINT_TAG = "nowrongturns.fingerprint"
CONCURRENT_CALLS = 8


def mlflow_client(tracking_uri: str):
    """An MlflowClient for the server or store at `tracking_uri` (mlflow: an optional extra)."""
    try:
        from mlflow import MlflowClient
    except ImportError as error:
        raise MissingExtraError("nwt export mlflow", "mlflow", "mlflow") from error
    return MlflowClient(tracking_uri=tracking_uri)


def flat_params(config: dict, prefix: str = "") -> dict[str, str]:
    """A nested run config as MLflow params: dotted keys, values as text."""
    params = {}
    for key, value in config.items():
        if isinstance(value, dict) and value:
            params.update(flat_params(value, f"{prefix}{key}."))
        else:
            params[f"{prefix}{key}"] = str(value)[:PARAM_VALUE_LENGTH]
    return params


def log_batches(metrics: list, params: list):
    """(metrics, params) of each log_batch call: as few calls as MLflow's limits allow, the
    params in the first."""
    while metrics or params:
        batch_params, params = params[:PARAMS_PER_CALL], params[PARAMS_PER_CALL:]
        room = ENTITIES_PER_CALL - len(batch_params)
        batch_metrics, metrics = metrics[:room], metrics[room:]
        yield batch_metrics, batch_params


def _experiment_id(client, name: str) -> str:
    experiment = client.get_experiment_by_name(name)
    return experiment.experiment_id if experiment else client.create_experiment(name)


def _exported_runs(client, experiment_id: str, source: str) -> dict[str, tuple[str, str]]:
    """Run name -> (MLflow run id, fingerprint) of the runs an earlier export of `source` made;
    the fingerprint is "" where that export did not finish the run."""
    found, token = {}, None
    while True:
        page = client.search_runs(
            [experiment_id],
            filter_string=f"tags.`{SOURCE_TAG}` = '{source}'",
            max_results=1000,
            page_token=token,
        )
        for run in page:
            tags = run.data.tags
            found[tags[RUN_TAG]] = (run.info.run_id, tags.get(FINGERPRINT_TAG, ""))
        token = page.token
        if not token:
            return found


def _timestamp_ms(run) -> int:
    created = run.trajectory.attributes.get("created")
    if created is None:
        return 0
    return int(datetime.datetime.fromisoformat(created).timestamp() * 1000)


def _artifacts(run) -> list[tuple[Path, str]]:
    """(file, artifact folder) of a run's tables and figures."""
    tables = [run.folder / RUN_TABLES[name] for name in run.tables]
    if "schedule" in run.tables:
        tables.append(run.folder / "schedule.json")
    return [(path, "tables") for path in tables] + [(p, "figures") for p in run.figures.values()]


def _fingerprint(metrics: pd.DataFrame, params: dict, artifacts: list) -> str:
    """What an export of a run logs, hashed: an unchanged run is not logged again."""
    digest = hashlib.sha256(metrics.to_csv(index=False).encode())
    digest.update(json.dumps(params, sort_keys=True).encode())
    for path, folder in artifacts:
        digest.update(f"{folder}/{path.name}".encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def export_mlflow(results: str | Path, tracking_uri: str, experiment: str) -> dict[str, str]:
    """Log every run of a results directory to MLflow; run name -> MLflow run id.

    A run an earlier export of the same results logged whole, unchanged since, is left as it is
    (the same MLflow run); a changed one is logged anew, its earlier MLflow run deleted, since
    MLflow cannot take back a metric value once logged. The calls that log the runs' metrics
    and artifacts go CONCURRENT_CALLS at a time, each run's as soon as its metrics are computed:
    a server spends most of a call waiting on its store (benchmarks/README.md)."""
    client = mlflow_client(tracking_uri)
    from mlflow.entities import Metric, Param

    experiment_id = _experiment_id(client, experiment)
    source = str(Path(results).resolve())
    exported = _exported_runs(client, experiment_id, source)
    ids, calls, fingerprints = {}, [], {}
    with ThreadPoolExecutor(CONCURRENT_CALLS) as pool:
        for run in open_results(results):
            has_trajectory = (run.folder / "trajectory.h5").is_file()
            params = flat_params(run.config) if has_trajectory else {}
            metrics = run_metrics(run)
            artifacts = _artifacts(run)
            fingerprint = _fingerprint(metrics, params, artifacts)
            previous_id, previous_fingerprint = exported.get(run.name, (None, None))
            if previous_fingerprint == fingerprint:
                ids[run.name] = previous_id
                run.close()
                continue
            if previous_id is not None:
                client.delete_run(previous_id)
            tags = {SOURCE_TAG: source, RUN_TAG: run.name}
            run_id = client.create_run(experiment_id, tags=tags, run_name=run.name).info.run_id
            timestamp = _timestamp_ms(run) if has_trajectory else 0
            logged = [
                Metric(name, value, timestamp, int(step))
                for name, step, value in metrics.itertuples(index=False)
            ]
            param_list = [Param(key, value) for key, value in params.items()]
            # Sent while the next runs' metrics are computed: the server stores as we go.
            for batch_metrics, batch_params in log_batches(logged, param_list):
                calls.append(pool.submit(client.log_batch, run_id, batch_metrics, batch_params))
            for path, folder in artifacts:
                calls.append(pool.submit(client.log_artifact, run_id, str(path), folder))
            run.close()
            ids[run.name] = run_id
            fingerprints[run_id] = fingerprint
        for call in calls:
            call.result()  # raises the first failure
        list(pool.map(lambda run_id: _finish(client, run_id, fingerprints[run_id]), fingerprints))
    return ids


def _finish(client, run_id: str, fingerprint: str) -> None:
    """Mark an MLflow run whole, once everything of it is logged: its fingerprint, then ended."""
    client.set_tag(run_id, FINGERPRINT_TAG, fingerprint)
    client.set_terminated(run_id)
