"""ruff, snakefmt and Snakemake's own linter, as the README promises."""

import re
import subprocess
import sys
from pathlib import Path

from helpers.runs import REPO

BIN = Path(sys.executable).parent


def _run(*command):
    return subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=300)


def test_ruff():
    result = _run(BIN / "ruff", "check", ".")
    assert result.returncode == 0, result.stdout


def test_snakefmt():
    result = _run(BIN / "snakefmt", "--check", ".")
    assert result.returncode == 0, result.stderr


def test_snakemake_lint_has_only_the_documented_line():
    """README, 'Lint': every rule runs the project's own `nwt`, so no per-rule conda env."""
    result = _run(sys.executable, "-m", "snakemake", "--lint")
    lints = re.findall(r"^    \* (.+?):$", result.stderr, flags=re.MULTILINE)
    assert "Lints for" not in result.stderr or lints, result.stderr  # the format is still read
    assert set(lints) <= {"Specify a conda environment or container for each rule."}, lints
