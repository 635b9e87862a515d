"""environment.yml (conda/mamba) lists the same runtime dependencies as pyproject.toml and the
extras it carries, and installs the exporters' extras; every stage has its help; `nwt --version`
and each job log's first line say what made the outputs."""

import re
import subprocess
import sys
import tomllib
from importlib import metadata

import yaml
from helpers.runs import REPO


def _name(requirement: str) -> str:
    return re.split(r"[<>=!~ \[;]", requirement.strip(), maxsplit=1)[0].lower().replace("_", "-")


# conda-forge names that differ from PyPI's
CONDA_TO_PYPI = {"pytorch": "torch"}


# The extras environment.yml installs beside the runtime dependencies.
ENVIRONMENT_EXTRAS = ("docs", "lightning", "transformers")


def test_environment_yml_matches_pyproject():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    required = project["dependencies"] + [r for extra in ENVIRONMENT_EXTRAS for r in extras[extra]]
    pypi = {_name(r) for r in required}
    environment = yaml.safe_load((REPO / "environment.yml").read_text())
    conda = set()
    for entry in environment["dependencies"]:
        if isinstance(entry, dict):  # the pip: section installs this package itself
            continue
        name = _name(entry)
        if name not in ("python", "pip"):
            conda.add(CONDA_TO_PYPI.get(name, name))
    assert conda == pypi


def test_every_stage_has_help():
    for stage in (
        "train",
        "import",
        "measure",
        "schedule",
        "figures",
        "ablation-figure",
        "contrast-figure",
        "claims",
        "export",
    ):
        result = subprocess.run(
            [sys.executable, "-m", "nowrongturns", stage, "--help"], capture_output=True, text=True
        )
        assert result.returncode == 0 and f"usage: nwt {stage}" in result.stdout


def test_environment_yml_installs_the_exporters_extras():
    extras = tomllib.loads((REPO / "pyproject.toml").read_text())["project"][
        "optional-dependencies"
    ]
    assert (
        _name(extras["tensorboard"][0]) == "tensorboard" and _name(extras["mlflow"][0]) == "mlflow"
    )
    environment = yaml.safe_load((REPO / "environment.yml").read_text())
    (pip,) = [entry["pip"] for entry in environment["dependencies"] if isinstance(entry, dict)]
    assert pip == ["-e .[tensorboard,mlflow]"]


def test_version_and_the_first_line_of_a_job_log(tmp_path):
    """`nwt --version`, and every command's stderr (a job's log) opens with both versions."""
    version = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
    versions = f"nowrongturns {version}, torch {metadata.version('torch')}"
    nwt = [sys.executable, "-m", "nowrongturns"]
    shown = subprocess.run([*nwt, "--version"], capture_output=True, text=True, check=True)
    assert shown.stdout == f"nwt: {versions}\n"
    missing = tmp_path / "nothing"
    command = [*nwt, "export", "tensorboard", str(missing), "--logdir", str(tmp_path / "tb")]
    failed = subprocess.run(command, capture_output=True, text=True)
    lines = failed.stderr.splitlines()
    assert failed.returncode == 1 and lines[0] == f"nwt export: {versions}"
    assert (
        lines[-1]
        == f"nwt export: error: {missing}: not a results directory (it has no runs/ folder)"
    )
