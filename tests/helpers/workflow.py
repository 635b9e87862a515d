"""A copy of the workflow in a temporary directory, run with the real snakemake."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import yaml

from helpers.runs import REPO


@dataclass(frozen=True)
class PlannedJob:
    """A job as Snakemake's dry run lists it."""

    rule: str
    run: str  # the wildcard `run`, "" for a rule without it
    resources: dict[str, str]  # as printed: {"gpu": "1", "mem_mb": "2000", ...}


class Workflow:
    """A copy of the workflow in a temporary directory, run with the real snakemake."""

    def __init__(self, root: Path, config: dict):
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        shutil.copy(REPO / "Snakefile", root)
        shutil.copytree(REPO / "workflow", root / "workflow")
        self.write_config("config.yaml", config)

    def write_config(self, name: str, config: dict) -> Path:
        path = self.root / name
        path.write_text(yaml.safe_dump(config))
        return path

    def snakemake(
        self,
        *args: str,
        check: bool = True,
        cores: int | None = 2,
        env: dict[str, str] | None = None,
        timeout: int = 600,
    ) -> subprocess.CompletedProcess:
        """Run snakemake here, under a hard `timeout` that ends it and all it started.

        `cores=None` leaves --cores out (a cluster run, where the profile sets --jobs)."""
        command = [sys.executable, "-m", "snakemake"]
        if cores is not None:
            command += ["--cores", str(cores)]
        command += args
        # The rules call `nwt`: find it beside this interpreter even if the venv is not activated.
        env = dict(os.environ if env is None else env)
        env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
        # SIGTERM first (Snakemake then cancels its cluster jobs), SIGKILL 30 s later.
        limited = ["timeout", "--kill-after=30", str(timeout), *command]
        result = subprocess.run(
            limited, cwd=self.root, env=env, capture_output=True, text=True, timeout=timeout + 60
        )
        if result.returncode == 124:
            raise AssertionError(
                f"{' '.join(command)} ran past {timeout} s:\n{result.stdout}\n{result.stderr}"
            )
        if check and result.returncode != 0:
            raise AssertionError(f"{' '.join(command)} failed:\n{result.stdout}\n{result.stderr}")
        return result

    def dry_run(self, *args: str, **options) -> list[PlannedJob]:
        """Every job a dry run plans, read from Snakemake's own dry-run output; its `run` is the
        run, or the factor of an ablation figure, or "" for a job over every run."""
        output = self.snakemake("--dry-run", *args, **options).stdout
        jobs = []
        for block in re.split(r"\n(?=(?:local)?(?:rule|checkpoint) \w+:)", output):
            rule = re.match(r"(?:local)?(?:rule|checkpoint) (\w+):", block)
            if rule and rule.group(1) != "all":
                run = re.search(r"wildcards: (?:run|factor)=([^,\s]+)", block)
                resources = re.search(r"resources: (.*)", block)
                jobs.append(
                    PlannedJob(
                        rule.group(1),
                        run.group(1) if run else "",
                        dict(item.split("=", 1) for item in resources.group(1).split(", ")),
                    )
                )
        return jobs

    def planned_jobs(self, *args: str, **options) -> set[tuple[str, str]]:
        """(rule, run) of every job a dry run plans."""
        return {(job.rule, job.run) for job in self.dry_run(*args, **options)}
