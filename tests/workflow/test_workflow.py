"""The real snakemake on a copy of the workflow with a tiny config (tests/helpers/runs.py)."""

import copy
import json
import os
import re
import signal

import h5py
import numpy as np
import pandas as pd
import pytest
from helpers.runs import TINY_BASE, TINY_WORKFLOW_CONFIG
from helpers.workflow import Workflow

RUNS = {"base", "seed=1", "rosenbrock"}
# interpolation: the one analysis along the path on by default (config `analyses`).
STAGES = {"train", "measure", "interpolation", "schedule", "figures"}
OUTPUTS = [
    "runs/{run}/trajectory.h5",
    "runs/{run}/geometry.parquet",
    "runs/{run}/schedule.csv",
    "runs/{run}/schedule.json",
    "runs/{run}/bound.csv",
    "runs/{run}/interpolation.parquet",
    "figures/{run}/geometry.png",
    "figures/{run}/schedule.png",
    "figures/{run}/bound.png",
    "figures/{run}/interpolation.png",
]
# The closed loop on the base run: its two retrainings, their comparison and its figure.
CLOSED_LOOP = {(rule, "base") for rule in ("retrain", "closed_loop", "closed_loop_figure")}
# The jobs over several runs: (rule, the factor of an ablation figure or "") and their outputs.
COMPARISONS = {("ablation_figure", "seed"), ("contrast_figure", ""), ("claims", "")}
COMPARISON_OUTPUTS = [
    "figures/ablations/seed.png",
    "figures/contrasting.png",
    "claims.csv",
    "claims.html",
]


def _config_with(section: str, **changes) -> dict:
    config = copy.deepcopy(TINY_WORKFLOW_CONFIG)
    config.setdefault(section, {}).update(changes)
    return config


def test_run_makes_every_output_then_has_nothing_to_do(finished_workflow):
    for run in RUNS:
        for output in OUTPUTS:
            path = finished_workflow.root / "results" / output.format(run=run)
            assert path.stat().st_size > 0, path
        for stage in STAGES:
            assert (finished_workflow.root / f"results/logs/{stage}/{run}.log").exists()
        # train has no benchmark file beside its between-workflow cache; its log says the cost
        for stage in STAGES - {"train"}:
            assert (finished_workflow.root / f"results/benchmarks/{stage}/{run}.tsv").exists()
        train_log = (finished_workflow.root / f"results/logs/train/{run}.log").read_text()
        assert re.search(r"s wall, peak memory \d+ MB", train_log), train_log
    for output in (
        "runs/base--derived/trajectory.h5",
        "runs/base--cosine/trajectory.h5",
        "runs/base/closed_loop.csv",
        "figures/base/closed_loop.png",
    ):
        assert (finished_workflow.root / "results" / output).stat().st_size > 0, output
    for output in COMPARISON_OUTPUTS:
        assert (finished_workflow.root / "results" / output).stat().st_size > 0, output
    for log in ("ablation_figure/seed", "contrast_figure/contrasting", "claims/claims"):
        assert (finished_workflow.root / f"results/logs/{log}.log").exists()
    assert not list((finished_workflow.root / "results").rglob("*.partial"))
    assert "Nothing to be done" in finished_workflow.snakemake("--dry-run").stdout
    assert finished_workflow.planned_jobs() == set()


def test_measure_setting_reruns_measure_and_what_follows_never_train(finished_workflow):
    variant = finished_workflow.write_config("measure.yaml", _config_with("measure", samples=3))
    planned = finished_workflow.planned_jobs("--configfile", str(variant))
    per_run = {(stage, run) for stage in ("measure", "schedule", "figures") for run in RUNS}
    assert planned == per_run | COMPARISONS | CLOSED_LOOP


def test_schedule_setting_reruns_schedule_figures_claims_and_the_closed_loop(finished_workflow):
    variant = finished_workflow.write_config("schedule.yaml", _config_with("schedule", smooth=5))
    planned = finished_workflow.planned_jobs("--configfile", str(variant))
    per_run = {(stage, run) for stage in ("schedule", "figures") for run in RUNS}
    assert planned == per_run | {("claims", "")} | CLOSED_LOOP


def test_closed_loop_is_off_with_retrain_false(finished_workflow):
    variant = finished_workflow.write_config(
        "no-loop.yaml", _config_with("schedule", retrain=False)
    )
    assert finished_workflow.planned_jobs("--configfile", str(variant)) == set()


def test_base_training_setting_reruns_every_stage_of_every_run(finished_workflow):
    variant = finished_workflow.write_config("base.yaml", _config_with("base", weight_decay=1e-4))
    planned = finished_workflow.planned_jobs("--configfile", str(variant))
    assert planned == {(stage, run) for stage in STAGES for run in RUNS} | COMPARISONS | CLOSED_LOOP


def test_deleted_geometry_reruns_that_run_from_measure_on(finished_workflow):
    geometry = finished_workflow.root / "results/runs/seed=1/geometry.parquet"
    aside = geometry.with_name("aside.parquet")
    os.replace(geometry, aside)
    try:
        planned = finished_workflow.planned_jobs()
    finally:
        os.replace(aside, geometry)
    per_run = {(stage, "seed=1") for stage in ("measure", "schedule", "figures")}
    assert planned == per_run | COMPARISONS


def test_closed_loop_retrains_on_the_files_the_schedule_stage_wrote(finished_workflow):
    """base--derived trained on schedule.json's lr, base--cosine on cosine.json's, both with the
    base run's step budget."""
    results = finished_workflow.root / "results"
    for loop, name in (("derived", "schedule.json"), ("cosine", "cosine.json")):
        document = json.loads((results / f"runs/base/{name}").read_text())
        with h5py.File(results / f"runs/base--{loop}/trajectory.h5") as f:
            lrs = f["steps/lr"][:]
            config = json.loads(f.attrs["config"])
        assert config["schedule"] == "file" and config["schedule_file"].endswith(name)
        np.testing.assert_allclose(lrs, document["lr"], rtol=1e-12)
    summary = pd.read_csv(results / "runs/base/closed_loop.csv").set_index("run")
    assert list(summary.index) == ["base", "base--derived", "base--cosine"]
    assert (summary["status"] == "complete").all()
    peak = json.loads((results / "runs/base/schedule.json").read_text())["peak_lr"]
    assert summary.loc["base--derived", "peak_lr"] == pytest.approx(peak)
    assert summary.loc["base--cosine", "peak_lr"] == pytest.approx(peak)
    curves = pd.read_csv(results / "runs/base/closed_loop_curves.csv")
    assert set(curves["run"]) == set(summary.index) and (curves["dist_to_final"] >= 0).all()


def test_second_workflow_takes_the_trajectory_from_the_shared_cache(tmp_path):
    """docs/cluster.md#between-workflow-cache: two checkouts, one SNAKEMAKE_OUTPUT_CACHE, one
    training."""
    cache = tmp_path / "cache"
    cache.mkdir()
    env = {**os.environ, "SNAKEMAKE_OUTPUT_CACHE": str(cache)}
    first = Workflow(tmp_path / "first", {"base": TINY_BASE})
    # --cache last: it takes rule names, and would take the targets for some.
    first.snakemake("results/runs/base/trajectory.h5", "--cache", env=env)
    # Another config, whose run `seed=0` is the first one's `base`, and whose base is new.
    second = Workflow(
        tmp_path / "second", {"base": {**TINY_BASE, "seed": 1}, "ablations": {"seed": [0]}}
    )
    targets = [f"results/runs/{run}/trajectory.h5" for run in ("base", "seed=0")]
    result = second.snakemake(*targets, "--cache", env=env)

    # Snakemake creates the log of a job it takes from the cache, empty: nothing trained here.
    assert (second.root / "results/logs/train/seed=0.log").read_text() == "", result.stderr
    assert "validation accuracy" in (second.root / "results/logs/train/base.log").read_text()
    cached = (first.root / "results/runs/base/trajectory.h5").resolve()
    assert cached.parent == cache
    assert (second.root / "results/runs/seed=0/trajectory.h5").resolve() == cached


# docs/rerunning.md: one test per recipe, on what Snakemake plans to run.


def test_recipe_forcerun_a_rule_reruns_it_and_what_follows(finished_workflow):
    planned = finished_workflow.planned_jobs("--forcerun", "measure")
    per_run = {(stage, run) for stage in ("measure", "schedule", "figures") for run in RUNS}
    assert planned == per_run | COMPARISONS | CLOSED_LOOP


def test_recipe_until_a_rule_stops_after_it(workflow):
    planned = workflow.planned_jobs("--until", "measure")
    assert planned == {(stage, run) for stage in ("train", "measure") for run in RUNS}


def test_recipe_one_runs_file_makes_only_what_it_needs(workflow):
    # and the training of its seed sibling, whose final point gamma_other is measured against
    assert workflow.planned_jobs("results/runs/base/geometry.parquet") == {
        ("train", "base"),
        ("train", "seed=1"),
        ("measure", "base"),
    }


# In the train job, SIGKILL the Snakemake that started it (the login session ends); training
# itself goes on and its output lands, but Snakemake never records that the job finished_workflow.
KILL_SNAKEMAKE_HOOK = """
import os, signal, sys
if os.environ.get("NWT_TEST_KILL_SNAKEMAKE") and sys.argv[0].endswith("nwt"):
    pid = os.getppid()
    while pid > 1:
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            if b"snakemake" in handle.read():
                os.kill(pid, signal.SIGKILL)
                break
        with open(f"/proc/{pid}/stat") as handle:
            pid = int(handle.read().rsplit(")", 1)[1].split()[1])
"""


def test_recipe_rerun_incomplete_redoes_what_a_killed_snakemake_left(workflow, tmp_path):
    hooks = tmp_path / "hooks"
    hooks.mkdir()
    (hooks / "sitecustomize.py").write_text(KILL_SNAKEMAKE_HOOK)
    target = "results/runs/base/trajectory.h5"
    killed = workflow.snakemake(
        target,
        check=False,
        env={**os.environ, "PYTHONPATH": str(hooks), "NWT_TEST_KILL_SNAKEMAKE": "1"},
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert (workflow.root / target).exists()  # the job finished after Snakemake died

    refused = workflow.snakemake("--dry-run", target, check=False)
    assert refused.returncode != 0
    assert f"Incomplete files:\n{target}" in refused.stdout + refused.stderr
    assert workflow.planned_jobs("--rerun-incomplete", target) == {("train", "base")}


def test_recipe_outputs_whose_params_changed(finished_workflow):
    variant = finished_workflow.write_config("measure.yaml", _config_with("measure", samples=3))
    changed = {f"results/runs/{run}/geometry.parquet" for run in RUNS}
    summary = finished_workflow.snakemake("--summary", "--configfile", str(variant)).stdout
    rows = [line.split("\t") for line in summary.splitlines()[1:]]
    assert {row[0] for row in rows if row[4] == "params changed"} == changed
    # --list-changes params lists them too, but in Snakemake 9.19-9.27 also the last output of
    # every other job (docs/rerunning.md): only that it lists them is asserted.
    listed = finished_workflow.snakemake("--list-changes", "params", "--configfile", str(variant))
    assert changed <= set(listed.stdout.split())


@pytest.mark.parametrize(
    "config_change, key",
    [
        ({"bse": {}}, "bse"),
        ({"base": {"bach_size": 32}}, "bach_size"),
        ({"base": {"lr": "fast"}}, "base.lr"),
        ({"base": {"epochs": -1}}, "base.epochs"),
        ({"ablations": {"optimizer": ["rmsprop"]}}, "ablations.optimizer[0]"),
        ({"measure": {"samples": "eight"}}, "measure.samples"),
        ({"figures": {"format": "jpg"}}, "figures.format"),
    ],
)
def test_malformed_config_stops_before_any_job(workflow, config_change, key):
    config = copy.deepcopy(TINY_WORKFLOW_CONFIG)
    for section, value in config_change.items():
        if isinstance(config.get(section), dict):
            config[section] = {**config[section], **value}
        else:
            config[section] = value
    workflow.write_config("config.yaml", config)
    result = workflow.snakemake(check=False)
    assert result.returncode != 0
    assert key in result.stderr
    assert not (workflow.root / "results").exists()


def test_new_ablation_factor_gets_its_figure(finished_workflow):
    """A factor added to `ablations` needs no code: its runs, then its figure, one line a level."""
    config = copy.deepcopy(TINY_WORKFLOW_CONFIG)
    config["ablations"] = {**config["ablations"], "width": [2]}
    variant = finished_workflow.write_config("width.yaml", config)
    target = "results/figures/ablations/width.png"
    assert ("ablation_figure", "width") in finished_workflow.planned_jobs(
        "--configfile", str(variant)
    )
    finished_workflow.snakemake(target, "--configfile", str(variant))
    assert (finished_workflow.root / target).stat().st_size > 0
    trained = {
        path.parent.name for path in (finished_workflow.root / "results/runs").glob("*/*.h5")
    }
    assert "width=2" in trained


def test_figure_format_is_a_setting(finished_workflow):
    variant = finished_workflow.write_config("svg.yaml", _config_with("figures", format="svg"))
    planned = finished_workflow.snakemake("--dry-run", "--configfile", str(variant)).stdout
    for output in ("figures/base/geometry.svg", "figures/ablations/seed.svg", "contrasting.svg"):
        assert output in planned
    assert ".png" not in planned
