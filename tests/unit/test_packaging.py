"""environment.yml (conda/mamba) lists the same runtime dependencies as pyproject.toml, and the
extras it carries."""

import re
import subprocess
import sys
import tomllib

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
    ):
        result = subprocess.run(
            [sys.executable, "-m", "nowrongturns", stage, "--help"], capture_output=True, text=True
        )
        assert result.returncode == 0 and f"usage: nwt {stage}" in result.stdout
