"""environment.yml (conda/mamba) lists the same runtime dependencies as pyproject.toml, and its
`docs` extra."""

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


def test_environment_yml_matches_pyproject():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    requirements = project["dependencies"] + project["optional-dependencies"]["docs"]
    pypi = {_name(r) for r in requirements}
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
