"""Every command of docs/recipes.md, run as written, in a temporary copy of the workflow where a
tiny config's base run has been trained and measured (what the recipes read of a `make run`)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys

import h5py
import pandas as pd
import pytest
from helpers.datasets import first_files_of_every_layout
from helpers.runs import REPO, TINY_BASE
from helpers.workflow import Workflow

PAGE = REPO / "docs" / "recipes.md"
# The base run alone, at the tiny config's size: what the recipes read and extend. Checkpoints
# 0, 1, 2, 22, 44: the recipes measure and read every one, and no test counts them (the schedule
# fit needs 3 before the last 5 %; `Checkpoint k` reads checkpoint 2, at step 2).
CONFIG = {
    "base": {**TINY_BASE, "checkpoint": {"dense_first": 3, "every": 22}},
    "measure": {"samples": 2},
    "schedule": {"smooth": 3, "retrain": False},
    "analyses": {"interpolation": False},
}


def recipes() -> dict[str, list[tuple[str, str]]]:
    """Each `## ` section of the page: its fenced blocks, as (language, code)."""
    sections: dict[str, list[tuple[str, str]]] = {}
    for section in re.split(r"^## ", PAGE.read_text(), flags=re.MULTILINE)[1:]:
        title, _, body = section.partition("\n")
        blocks = re.findall(r"^```(\w+)\n(.*?)^```", body, flags=re.MULTILINE | re.DOTALL)
        sections[title.strip()] = blocks
    return sections


@pytest.fixture(scope="module")
def workflow(tmp_path_factory):
    flow = Workflow(tmp_path_factory.mktemp("recipes"), CONFIG)
    shutil.copytree(REPO / "configs", flow.root / "configs")
    flow.snakemake("results/runs/base/geometry.parquet")
    return flow


def run_recipe(flow: Workflow, title: str) -> str:
    """Run every block of the recipe in the workflow's directory, in order; their stdout."""
    env = dict(os.environ)
    env["PATH"] = f"{os.path.dirname(sys.executable)}{os.pathsep}{env['PATH']}"
    printed = []
    for language, code in recipes()[title]:
        if language == "sh":
            command = ["bash", "-euo", "pipefail", "-c", code]
        else:
            assert language == "python", f"{title}: a block of language {language!r}"
            command = [sys.executable, "-c", code]
        result = subprocess.run(
            command, cwd=flow.root, env=env, capture_output=True, text=True, timeout=600
        )
        assert result.returncode == 0, f"{title}:\n{code}\n{result.stdout}\n{result.stderr}"
        printed.append(result.stdout)
    return "\n".join(printed)


def test_every_recipe_is_tested():
    tested = {name.removeprefix("test_") for name in globals() if name.startswith("test_")}
    for title, blocks in recipes().items():
        assert blocks, f"recipe {title!r} has no command"
        slug = re.sub(r"\W+", "_", title.lower()).strip("_")
        assert slug in tested, f"recipe {title!r} has no test_{slug}"


def test_one_run_at_another_learning_rate(workflow):
    base = workflow.root / "results/runs/base/trajectory.h5"
    trained = base.stat().st_mtime_ns
    run_recipe(workflow, "One run at another learning rate")
    assert (workflow.root / "results/figures/lr=0.1/geometry.png").stat().st_size > 0
    with h5py.File(workflow.root / "results/runs/lr=0.1/trajectory.h5") as trajectory:
        assert set(trajectory["steps/lr"][:]) == {0.1}
    assert base.stat().st_mtime_ns == trained  # the base run was not retrained


def test_more_samples_on_an_existing_trajectory_without_retraining(workflow):
    base = workflow.root / "results/runs/base/trajectory.h5"
    trained = base.stat().st_mtime_ns
    printed = run_recipe(workflow, "More samples on an existing trajectory, without retraining")
    planned = printed.split("Job stats")[1]
    assert "measure" in planned and "train" not in planned, planned
    assert base.stat().st_mtime_ns == trained
    for table in ("results/runs/base/geometry.parquet", "base-16-samples.parquet"):
        geometry = pd.read_parquet(workflow.root / table)
        sampled = geometry[geometry["source"] == "sampled"]
        assert set(sampled.groupby("step").size()) == {16}, table


def test_a_preset_s_dry_run_on_slurm(workflow):
    # the reader's copy of CIFAR-10 where the recipe says: its layout's first files
    cifar10 = first_files_of_every_layout(workflow.root / "stub")["cifar10"]
    shutil.copytree(cifar10, workflow.root / "data/cifar10")
    printed = run_recipe(workflow, "A preset's dry run on Slurm")
    assert "rule train:" in printed and "slurm_partition" in printed
    assert "runs/base/trajectory.h5" in printed and "runs/opt-adam/" in printed
    # the preset alone: nothing of the directory's config.yaml (its measure.samples is 2)
    assert "--samples 8 " in printed and "--samples 2 " not in printed
    # examples (the official size: the stub holds no images), shards, steps, checkpoints
    assert re.search(
        r"^base\s+40000\s+official size\s+2\s+29640\s+200\b", printed, flags=re.MULTILINE
    )


def test_the_geometry_table_in_pandas(workflow):
    printed = run_recipe(workflow, "The geometry table in pandas")
    assert re.search(r"sampled gamma > 0: [\d.]+% of \d+ gradients", printed), printed
    assert "train_batch" in printed


def test_checkpoint_k_in_a_model(workflow):
    printed = run_recipe(workflow, "Checkpoint k in a model")
    assert re.search(r"checkpoint 2 \(step 2\): validation loss \d+\.\d{4}", printed), printed
