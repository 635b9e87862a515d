"""A person's mistakes are refused early, each in one line naming the file or key (issue 27): a
data directory that is not there (at `snakemake -n`, before any job), a wrong key under a named
run, a key misspelt, a partial run config or workflow config given to a standalone command, a path
that is not a trajectory, a number given on Snakemake's --config command line."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml
from helpers.runs import REPO, SCHEMA, TINY_BASE
from helpers.runs import one_line_error as command_error
from helpers.workflow import Workflow

from nowrongturns.config import ConfigError, load_schema, validate_config
from nowrongturns.config.command_line import parse_command_line_values
from nowrongturns.config.data_dirs import FIRST_FILES, check_data_directories
from nowrongturns.trajectory.format import TrajectoryError
from nowrongturns.trajectory.reader import TrajectoryReader

NWT = Path(sys.executable).parent / "nwt"


def nwt(*args, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run([NWT, *map(str, args)], capture_output=True, text=True, cwd=cwd)


def one_line_error(result: subprocess.CompletedProcess) -> str:
    """The error of a command that failed on bad input: one line, no traceback."""
    assert result.returncode == 1, result.stderr
    return command_error(result.stderr)


def test_paper_preset_placeholder_data_dir_is_refused_by_a_dry_run_naming_key_and_path(tmp_path):
    flow = Workflow(tmp_path, yaml.safe_load((REPO / "config.yaml").read_text()))
    shutil.copytree(REPO / "configs", tmp_path / "configs")
    result = flow.snakemake(
        "-n",
        "--configfile",
        "configs/paper-cifar10-resnet18.yaml",
        "--replace-workflow-config",
        check=False,
    )
    output = result.stdout + result.stderr
    assert result.returncode != 0 and "rule train" not in output
    assert "data.cifar10: '/path/to/cifar10' does not exist" in output, output


@pytest.mark.parametrize("task", FIRST_FILES)
def test_data_directory_without_its_layouts_first_files_is_refused(tmp_path, task):
    model = {"wikitext2": "transformer", "vaihingen": "unet"}.get(task, "mlp")
    config = validate_config(
        {"base": {"task": task, "model": model}, "data": {task: str(tmp_path)}}, SCHEMA
    )
    with pytest.raises(ConfigError, match=f"data.{task}: '{tmp_path}' has no ") as error:
        check_data_directories(config)
    assert FIRST_FILES[task][0] in str(error.value)
    for path in FIRST_FILES[task]:  # the first files there: nothing more is asked here
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).touch()
    check_data_directories(config)


def test_error_under_a_named_run_names_its_key():
    with pytest.raises(ConfigError) as error:
        validate_config({"runs": {"x": {"lr": -1}}}, SCHEMA)
    assert "runs.x.lr: -1 is less than or equal to the minimum of 0" in str(error.value)


@pytest.mark.parametrize(
    "config, nearest",
    [
        ({"base": {"lrr": 0.1}}, "'lrr': did you mean 'lr'?"),
        ({"measure": {"sample": 2}}, "'sample': did you mean 'samples'?"),
        ({"base": {"optimizer": "adamm"}}, "'adamm': did you mean 'adam'?"),
        ({"ablations": {"batchsize": [16]}}, "'batchsize': did you mean 'batch_size'?"),
        ({"runs": {"x": {"weight_decy": 0.1}}}, "'weight_decy': did you mean 'weight_decay'?"),
    ],
)
def test_unknown_key_or_value_suggests_the_nearest_known_one(config, nearest):
    with pytest.raises(ConfigError, match=nearest.replace("?", r"\?")):
        validate_config(config, SCHEMA)


def test_nwt_train_fills_the_schema_defaults_of_a_partial_run(tmp_path):
    run = {"task": "digits", "model": "cnn", "lr": 0.1, "epochs": 1, "width": 2}
    result = nwt("train", "--run", json.dumps(run), "--out", tmp_path / "t.h5", "--device", "cpu")
    assert result.returncode == 0, result.stderr
    refused = nwt("train", "--run", json.dumps({**run, "lr": "fast"}), "--out", tmp_path / "u.h5")
    assert "base.lr: 'fast' is not of type 'number'" in refused.stderr
    assert "Traceback" not in refused.stderr and not (tmp_path / "u.h5").exists()


def test_nwt_claims_fills_the_schema_defaults_of_a_partial_config(trained, tmp_path):
    _, _, geometry = trained()
    table = pd.read_parquet(geometry).assign(run="base")
    table.to_parquet(tmp_path / "geometry.parquet")
    (tmp_path / "config.yaml").write_text(yaml.safe_dump({"base": TINY_BASE}))
    result = nwt(
        "claims",
        "--config",
        tmp_path / "config.yaml",
        "--csv",
        tmp_path / "claims.csv",
        "--html",
        tmp_path / "claims.html",
        "--geometry",
        tmp_path / "geometry.parquet",
    )
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "claims.csv").exists()


@pytest.mark.parametrize("kind", ["directory", "empty file", "Parquet file"])
def test_a_path_that_is_not_a_trajectory_is_named_as_such(trained, tmp_path, kind):
    path = tmp_path / "trajectory.h5"
    if kind == "directory":
        path.mkdir()
    elif kind == "empty file":
        path.touch()
    else:
        shutil.copy(trained()[2], path)
    with pytest.raises(TrajectoryError) as error:
        TrajectoryReader(path)
    assert f"{path}: is a{'n' if kind[0] == 'e' else ''} {kind}" in str(error.value)


def test_nwt_measure_on_a_directory_says_so_in_one_line(tmp_path):
    error = one_line_error(nwt("measure", tmp_path, "--out", tmp_path / "g.parquet"))
    assert f"{tmp_path}: is a directory, not a trajectory file" in error


def test_command_line_numbers_are_read_as_yaml_scalars_where_the_schema_wants_them():
    schema = load_schema(SCHEMA)
    given = {  # as Snakemake's --config 'base={lr: 0.2, ...}' passes them: every scalar a string
        "base": {"lr": "0.2", "clip_grad_norm": "null", "nesterov": "true", "model": "cnn"},
        "ablations": {"batch_size": ["16", "32"], "lr": ["1e-3"]},
        "measure": {"device": "cpu", "samples": "4"},
        "results": "12",
    }
    parsed = parse_command_line_values(given, schema)
    assert parsed["base"] == {"lr": 0.2, "clip_grad_norm": None, "nesterov": True, "model": "cnn"}
    assert parsed["ablations"] == {"batch_size": [16, 32], "lr": [0.001]}
    assert parsed["measure"] == {"device": "cpu", "samples": 4}
    assert parsed["results"] == "12"  # a string where the schema wants one
    validate_config(parsed, SCHEMA)


def test_snakemake_takes_a_number_from_the_command_line(workflow):
    planned = workflow.snakemake("-n", "--printshellcmds", "--config", "base={lr: 0.2}").stdout
    assert '"lr": 0.2' in planned
