"""A results directory and its run folders, as the workflow lays them out, read lazily:

    results/runs/{run}/geometry.parquet, dense.parquet, {analysis}.parquet, schedule.csv, ...
    results/runs/{run}/trajectory.h5
    results/figures/{run}/{figure}.png, results/figures/ablations/{factor}.png
    results/claims.csv

Listing runs lists folders and opens no file; a table is read when first asked for (then kept),
a config from the trajectory's attributes alone, the weights of a checkpoint when asked for.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterator
from pathlib import Path

import pandas as pd

from nowrongturns.results.trajectory import Trajectory
from nowrongturns.trajectory.reader import read_config

# Table name -> its file in a run folder. The Parquet tables carry their metadata in the file
# (DataFrame.attrs); the schedule's is schedule.json.
RUN_TABLES = {
    "geometry": "geometry.parquet",
    "dense": "dense.parquet",
    "endpoints": "endpoints.parquet",
    "layers": "layers.parquet",
    "interpolation": "interpolation.parquet",
    "sharpness": "sharpness.parquet",
    "plane": "plane.parquet",
    "orthogonal": "orthogonal.parquet",
    "schedule": "schedule.csv",
    "bound": "bound.csv",
    "closed_loop": "closed_loop.csv",
    "closed_loop_curves": "closed_loop_curves.csv",
}
ANALYSES = ("interpolation", "sharpness", "plane", "orthogonal")
FIGURE_SUFFIXES = (".png", ".pdf", ".svg")


def read_table(path: Path) -> pd.DataFrame:
    """A table file as a DataFrame, its metadata in `.attrs` (Parquet keeps them)."""
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such table")
    return pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_csv(path)


def _figures(folder: Path, prefix: str = "") -> dict[str, Path]:
    if not folder.is_dir():
        return {}
    return {
        f"{prefix}{path.stem}": path
        for path in sorted(folder.iterdir())
        if path.suffix in FIGURE_SUFFIXES
    }


class Run:
    """One run folder (`results/runs/{run}`): its config, tables, trajectory and figures."""

    def __init__(self, folder: str | Path, results: Results | None = None):
        self.folder = Path(folder)
        if not self.folder.is_dir():
            raise FileNotFoundError(f"{self.folder}: no run folder there")
        self.name = self.folder.name
        # The results directory around it, where the run lies in one (runs/{run}).
        if results is None and self.folder.parent.name == "runs":
            results = Results(self.folder.parent.parent)
        self.results = results
        self._tables: dict[str, pd.DataFrame] = {}

    def __repr__(self) -> str:
        return f"Run({self.name!r}, folder={str(self.folder)!r})"

    @functools.cached_property
    def trajectory(self) -> Trajectory:
        """The trajectory (trajectory.h5), opened when first read from."""
        return Trajectory(self.folder / "trajectory.h5")

    @functools.cached_property
    def config(self) -> dict:
        """The run config that trained it (every key filled), from the trajectory's attributes."""
        path = self.folder / "trajectory.h5"
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no trajectory, so no config, for run {self.name!r}")
        return read_config(path)

    @property
    def tables(self) -> list[str]:
        """The names of the tables this run has (RUN_TABLES), from the folder's listing."""
        return [name for name, file in RUN_TABLES.items() if (self.folder / file).is_file()]

    def table(self, name: str) -> pd.DataFrame:
        """One of RUN_TABLES as a DataFrame with its metadata in `.attrs`; read once, then kept."""
        if name not in RUN_TABLES:
            raise ValueError(f"no table {name!r}; the tables are {', '.join(RUN_TABLES)}")
        if name not in self._tables:
            table = read_table(self.folder / RUN_TABLES[name])
            if name == "schedule":
                table.attrs.update(json.loads((self.folder / "schedule.json").read_text()))
            self._tables[name] = table
        return self._tables[name]

    @property
    def geometry(self) -> pd.DataFrame:
        """One row per checkpoint x source x sample: loss, rsi, eb, gamma, the controls."""
        return self.table("geometry")

    @property
    def dense(self) -> pd.DataFrame:
        """Dense mode: the geometry of every training step."""
        return self.table("dense")

    @property
    def schedule(self) -> pd.DataFrame:
        """eta* per checkpoint and the fitted schedule; the fit (schedule.json) in `.attrs`."""
        return self.table("schedule")

    @property
    def bound(self) -> pd.DataFrame:
        """The distance to w* as the measured RSI and EB bound it, beside the actual one."""
        return self.table("bound")

    @property
    def analyses(self) -> dict[str, pd.DataFrame]:
        """The tables of the analyses along the path this run has (interpolation, ...)."""
        return {name: self.table(name) for name in ANALYSES if name in self.tables}

    @property
    def claims(self) -> pd.Series:
        """This run's row of the results directory's claims.csv."""
        if self.results is None:
            raise FileNotFoundError(f"{self.folder}: not inside a results directory's runs/")
        rows = self.results.claims.set_index("run")
        if self.name not in rows.index:
            raise ValueError(f"{self.results.folder / 'claims.csv'}: no row for run {self.name!r}")
        return rows.loc[self.name]

    @property
    def figures(self) -> dict[str, Path]:
        """Figure name -> file of this run's figures (results/figures/{run})."""
        if self.results is None:
            return {}
        return _figures(self.results.folder / "figures" / self.name)

    def close(self) -> None:
        """Close the trajectory file, where it was opened."""
        if "trajectory" in self.__dict__:
            self.trajectory.close()


class Results:
    """A results directory: its runs by name, the claims, the figures comparing runs."""

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        if not (self.folder / "runs").is_dir():
            raise FileNotFoundError(
                f"{self.folder}: not a results directory (it has no runs/ folder)"
            )
        self._runs: dict[str, Run] = {}

    def __repr__(self) -> str:
        return f"Results({str(self.folder)!r}, runs={self.runs})"

    @property
    def runs(self) -> list[str]:
        """The run names, sorted: the folders of runs/ (a listing, no file opened)."""
        return sorted(entry.name for entry in (self.folder / "runs").iterdir() if entry.is_dir())

    def __getitem__(self, name: str) -> Run:
        if name not in self._runs:
            if not (self.folder / "runs" / name).is_dir():
                raise KeyError(f"{self.folder}: no run {name!r}; the runs are {self.runs}")
            self._runs[name] = Run(self.folder / "runs" / name, self)
        return self._runs[name]

    def __iter__(self) -> Iterator[Run]:
        return (self[name] for name in self.runs)

    def __len__(self) -> int:
        return len(self.runs)

    def __contains__(self, name: str) -> bool:
        return name in self.runs

    def configs(self) -> pd.DataFrame:
        """One row per run (indexed by name), one column per config key (nested keys dotted),
        from the trajectories' attributes."""
        runs = [run for run in self if (run.folder / "trajectory.h5").is_file()]
        table = pd.json_normalize([run.config for run in runs])
        table.index = pd.Index([run.name for run in runs], name="run")
        return table

    @functools.cached_property
    def claims(self) -> pd.DataFrame:
        """claims.csv: the paper's claims checked on every run, one row per run."""
        return read_table(self.folder / "claims.csv")

    @property
    def figures(self) -> dict[str, Path]:
        """The figures comparing runs: "ablations/{factor}", "contrasting"."""
        figures = self.folder / "figures"
        return {**_figures(figures / "ablations", "ablations/"), **_figures(figures)}

    def close(self) -> None:
        for run in self._runs.values():
            run.close()


def open_results(path: str | Path) -> Results:
    """A results directory (the workflow's `results`): `results.runs`, `results["base"]`."""
    return Results(path)


def open_run(path: str | Path) -> Run:
    """One run folder (`results/runs/{run}`, or a file in it)."""
    path = Path(path)
    return Run(path.parent if path.is_file() else path)
