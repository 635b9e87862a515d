"""Trajectories recorded inside the real Lightning and Hugging Face Trainers, measured by the
real snakemake: the runs' config says `trajectory_from`, rule import stands in for train, and
measure, schedule, the analyses, the figures and the claims follow."""

import pandas as pd
from helpers.frameworks import RUN, hf_train, lightning_fit
from helpers.workflow import Workflow

OUTPUTS = [
    "runs/{run}/geometry.parquet",
    "runs/{run}/schedule.json",
    "runs/{run}/bound.csv",
    "runs/{run}/interpolation.parquet",
    "figures/{run}/geometry.png",
    "figures/{run}/bound.png",
]


def test_recorded_trainers_are_measured_by_the_workflow(tmp_path):
    lightning, _ = lightning_fit(tmp_path / "lightning", steps=20)
    hugging_face, _ = hf_train(tmp_path / "hf", steps=20)
    config = {
        "base": {**RUN, "trajectory_from": {"trajectory": str(lightning)}},
        "runs": {"hf": {"trajectory_from": {"trajectory": str(hugging_face)}}},
        "measure": {"samples": 2},
        "schedule": {"smooth": 3},
    }
    workflow = Workflow(tmp_path / "workflow", config)
    workflow.snakemake()
    results = workflow.root / "results"
    for run in ("base", "hf"):
        assert (results / f"logs/import/{run}.log").exists()
        assert not (results / f"logs/train/{run}.log").exists()
        for output in OUTPUTS:
            assert (results / output.format(run=run)).stat().st_size > 0, output
    lightning_sources = set(pd.read_parquet(results / "runs/base/geometry.parquet")["source"])
    assert {"train_batch", "update", "random_labels"} <= lightning_sources
    hf_sources = set(pd.read_parquet(results / "runs/hf/geometry.parquet")["source"])
    assert hf_sources == {"sampled", "full_batch"}
    claims = pd.read_csv(results / "claims.csv").set_index("run")
    assert set(claims.index) == {"base", "hf"} and claims["median_gamma"].notna().all()
    # Nothing left to do: the imported runs are not trained, nor imported again.
    assert "Nothing to be done" in workflow.snakemake("--dry-run").stdout
