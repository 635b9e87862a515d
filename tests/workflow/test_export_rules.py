"""Config `export`: switching an exporter on plans its one job after a finished workflow, and
reruns nothing else; off (the default), none."""

from __future__ import annotations

import copy

from helpers.runs import TINY_WORKFLOW_CONFIG


def test_export_switches_plan_the_exports_alone(finished_workflow):
    config = copy.deepcopy(TINY_WORKFLOW_CONFIG)
    config["export"] = {
        "tensorboard": True,
        "mlflow": {"tracking_uri": "http://127.0.0.1:5000", "experiment": "tiny"},
    }
    variant = finished_workflow.write_config("export.yaml", config)
    planned = finished_workflow.planned_jobs("--configfile", str(variant))
    assert planned == {("export_tensorboard", ""), ("export_mlflow", "")}
    assert finished_workflow.planned_jobs() == set()  # the default exports nothing
