"""ruff (lint and format), snakefmt, the import layers and Snakemake's own linter, as
docs/development.md#lint promises."""

import re
import subprocess
import sys
from pathlib import Path

from helpers.runs import REPO

BIN = Path(sys.executable).parent
# docs/development.md#lint: every rule runs the project's own `nwt`, so no per-rule conda env.
DOCUMENTED_LINT = "Specify a conda environment or container for each rule."


def _run(*command, cwd=REPO):
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=300)


def test_ruff():
    result = _run(BIN / "ruff", "check", ".")
    assert result.returncode == 0, result.stdout


def test_ruff_format():
    result = _run(BIN / "ruff", "format", "--check", ".")
    assert result.returncode == 0, result.stdout


def test_snakefmt():
    result = _run(BIN / "snakefmt", "--check", ".")
    assert result.returncode == 0, result.stderr


def test_imports_run_down_the_layers():
    """.importlinter: every subpackage in its layer, none importing from a layer above."""
    result = _run(BIN / "lint-imports")
    assert result.returncode == 0, result.stdout
    assert "Contracts: 1 kept, 0 broken." in result.stdout, result.stdout


def lint_problems(result: subprocess.CompletedProcess) -> list[str]:
    """What is wrong with a `snakemake --lint` run: any exit but 0, unless it is the 1 of lints
    alone and every lint is the documented one. Snakemake exits 1 for a crash too, so a 1 passes
    only where the output is lint reports and nothing else."""
    if result.returncode == 0:
        return []
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    lints = re.findall(r"^    \* (.+?):$", result.stderr, flags=re.MULTILINE)
    problems = [f"exit {result.returncode}"] if result.returncode != 1 or not lints else []
    problems += [f"undocumented lint: {lint}" for lint in lints if lint != DOCUMENTED_LINT]
    # A lint report: its header, its items and their indented text; caching notes before them.
    report = re.compile(
        r"^(Lints for |    |Workflow defines that rule \w+ is eligible for caching)"
    )
    problems += [f"not a lint report: {line}" for line in lines if not report.match(line)]
    return problems


def test_snakemake_lint_has_only_the_documented_line():
    result = _run(sys.executable, "-m", "snakemake", "--lint")
    assert not lint_problems(result), result.stderr


def test_the_lint_check_fails_where_snakemake_lint_fails(tmp_path):
    """A Snakefile Snakemake cannot read: --lint exits 1 with an error, not lints, and the check
    says so."""
    (tmp_path / "Snakefile").write_text("rule broken:\n    output: undefined_name\n")
    result = _run(sys.executable, "-m", "snakemake", "--lint", cwd=tmp_path)
    assert result.returncode != 0
    assert lint_problems(result)
