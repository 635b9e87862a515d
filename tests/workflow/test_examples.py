"""The worked examples of any training (examples/own_loop, examples/imported_checkpoints) run
as their READMEs say: each README's commands, from a checkout's layout, with the real snakemake.
"""

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from helpers.runs import REPO

FIGURES = ["bound.png", "geometry.png", "interpolation.png", "schedule.png"]


def run_readme(example: str, checkout: Path) -> subprocess.CompletedProcess:
    """The ```bash blocks of the example's README, run in a copy of the checkout's layout."""
    readme = (REPO / "examples" / example / "README.md").read_text()
    commands = "\n".join(re.findall(r"```bash\n(.*?)```", readme, flags=re.S))
    assert f"cd examples/{example}" in commands and "snakemake" in commands
    checkout.mkdir()
    shutil.copy(REPO / "Snakefile", checkout)
    for folder in ("workflow", "examples"):
        shutil.copytree(REPO / folder, checkout / folder)
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    result = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", commands],
        cwd=checkout,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.split()[-len(FIGURES) :] == FIGURES  # the `ls` of the figures
    return result


@pytest.mark.parametrize(
    "example, sources",
    [
        ("own_loop", {"train_batch", "update", "random_labels", "sampled", "full_batch"}),
        ("imported_checkpoints", {"sampled", "full_batch"}),
    ],
)
def test_the_example_runs_as_its_readme_says(tmp_path, example, sources):
    run_readme(example, tmp_path / "checkout")
    results = tmp_path / "checkout/examples" / example / "results"
    assert set(pd.read_parquet(results / "runs/base/geometry.parquet")["source"]) == sources
    assert (results / "logs/import/base.log").exists()
    assert not (results / "logs/train").exists()
    assert pd.read_csv(results / "claims.csv")["median_gamma"].notna().all()
