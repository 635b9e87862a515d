"""Every preset in configs/ is a valid config; a preset replaces config.yaml's runs."""

import shutil
from pathlib import Path

import pytest
import yaml
from conftest import REPO, SCHEMA, Workflow

from nowrongturns.config import expand_runs, validate_config

PRESETS = sorted((REPO / "configs").glob("*.yaml"))


@pytest.mark.parametrize("preset", PRESETS, ids=lambda path: path.stem)
def test_preset_is_valid(preset: Path):
    runs = expand_runs(validate_config(yaml.safe_load(preset.read_text()), SCHEMA))
    assert len(runs) >= 2  # a base and at least one run that differs from it
    if preset.stem.startswith("cpu-"):  # runs here: embedded data only
        assert all(not run["data_dir"] for run in runs.values())


def test_preset_replaces_the_default_runs(tmp_path):
    flow = Workflow(tmp_path, yaml.safe_load((REPO / "config.yaml").read_text()))
    shutil.copytree(REPO / "configs", tmp_path / "configs")
    planned = flow.planned_jobs(
        "--configfile", "configs/cpu-language.yaml", "--replace-workflow-config"
    )
    trained = {run for stage, run in planned if stage == "train"}
    assert trained == {"base", "batch_size=16", "optimizer=momentum"}
