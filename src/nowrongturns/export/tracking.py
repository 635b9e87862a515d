"""The results into MLflow: one MLflow run per workflow run, in an experiment the user names.

    nwt export mlflow results --tracking-uri http://127.0.0.1:5000 --experiment digits

Per run: the run config as params (nested keys dotted), the scalars of metrics.py batch-logged
(`log_batch`, as many values a call as MLflow takes), the run's tables and figures as artifacts.
An MLflow run is found again by its tags (the results directory's absolute path and the run's
name), so exporting the same results again updates the same MLflow runs; the metrics carry the
trajectory's creation time as their timestamp, so a value logged twice is stored once.
"""

from __future__ import annotations

import datetime
from pathlib import Path

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


def _exported_runs(client, experiment_id: str, source: str) -> dict[str, str]:
    """Run name -> MLflow run id of the runs an earlier export of `source` made."""
    found, token = {}, None
    while True:
        page = client.search_runs(
            [experiment_id],
            filter_string=f"tags.`{SOURCE_TAG}` = '{source}'",
            max_results=1000,
            page_token=token,
        )
        found.update({run.data.tags[RUN_TAG]: run.info.run_id for run in page})
        token = page.token
        if not token:
            return found


def _timestamp_ms(run) -> int:
    created = run.trajectory.attributes.get("created")
    if created is None:
        return 0
    return int(datetime.datetime.fromisoformat(created).timestamp() * 1000)


def export_mlflow(results: str | Path, tracking_uri: str, experiment: str) -> dict[str, str]:
    """Log every run of a results directory to MLflow; run name -> MLflow run id."""
    client = mlflow_client(tracking_uri)
    from mlflow.entities import Metric, Param

    experiment_id = _experiment_id(client, experiment)
    source = str(Path(results).resolve())
    exported = _exported_runs(client, experiment_id, source)
    ids = {}
    for run in open_results(results):
        run_id = exported.get(run.name)
        if run_id is None:
            tags = {SOURCE_TAG: source, RUN_TAG: run.name}
            run_id = client.create_run(experiment_id, tags=tags, run_name=run.name).info.run_id
        has_trajectory = (run.folder / "trajectory.h5").is_file()
        params = flat_params(run.config) if has_trajectory else {}
        timestamp = _timestamp_ms(run) if has_trajectory else 0
        metrics = [
            Metric(name, value, timestamp, int(step))
            for name, step, value in run_metrics(run).itertuples(index=False)
        ]
        for batch_metrics, batch_params in log_batches(
            metrics, [Param(key, value) for key, value in params.items()]
        ):
            client.log_batch(run_id, metrics=batch_metrics, params=batch_params)
        for name in run.tables:
            client.log_artifact(run_id, str(run.folder / RUN_TABLES[name]), "tables")
        if "schedule" in run.tables:
            client.log_artifact(run_id, str(run.folder / "schedule.json"), "tables")
        for path in run.figures.values():
            client.log_artifact(run_id, str(path), "figures")
        client.set_terminated(run_id)
        run.close()
        ids[run.name] = run_id
    return ids
