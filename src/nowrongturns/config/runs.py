"""The runs of a validated workflow config: `base`, one run per ablation value, the named `runs`,
with their names, seed siblings and ablation levels.

    >>> cfg = validate_config({"ablations": {"seed": [1]}}, "workflow/schemas/config.schema.yaml")
    >>> sorted(expand_runs(cfg))
    ['base', 'seed=1']
    >>> ablation_levels(cfg)
    {'seed': [(0, ['base']), (1, ['seed=1'])]}
"""

from __future__ import annotations

import json


def format_value(value) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def expand_runs(config: dict) -> dict[str, dict]:
    """Run name -> run config: `base`, one run per ablation value that differs from base, then
    the named `runs`.

    Each run config also gets `data_dir`, the directory `data` names for its task ("" for the
    embedded tasks), so that a run config alone says where its data are.
    """
    runs = {"base": config["base"]}
    for factor, values in config["ablations"].items():
        for value in values:
            if value == config["base"][factor]:
                continue  # that level of the factor is the base run itself
            runs[f"{factor}={format_value(value)}"] = {**config["base"], factor: value}
    for name, changes in config["runs"].items():
        runs[name] = {**config["base"], **changes}
    return {
        name: {**run, "data_dir": config["data"].get(run["task"], "")} for name, run in runs.items()
    }


def seed_siblings(runs: dict[str, dict]) -> dict[str, str]:
    """Run name -> the first other run (in `runs`' order) that differs from it in its seed alone,
    for the runs that have one: whose final point is the control w*' of `gamma_other`."""
    without_seed = {
        name: {key: value for key, value in run.items() if key != "seed"}
        for name, run in runs.items()
    }
    siblings = {}
    for name, settings in without_seed.items():
        same = [other for other in runs if other != name and without_seed[other] == settings]
        if same:
            siblings[name] = same[0]
    return siblings


def run_sources(config: dict) -> dict[str, tuple[str, dict[str, str]]]:
    """Run name -> (the config key of the run, {run key: the config key that sets it, where that
    is not `base`}), in expand_runs' order: where an error about a run points."""
    sources = {"base": ("base", {})}
    for factor, values in config["ablations"].items():
        for index, value in enumerate(values):
            if value != config["base"][factor]:
                key = f"ablations.{factor}[{index}]"
                sources[f"{factor}={format_value(value)}"] = (key, {factor: key})
    for name, changes in config["runs"].items():
        sources[name] = (f"runs.{name}", {key: f"runs.{name}.{key}" for key in changes})
    return sources


def ablation_levels(config: dict) -> dict[str, list[tuple[object, list[str]]]]:
    """Factor -> [(level, the runs at that level)] for each factor of `ablations`.

    A run is at level v of factor f when its settings differ from base's in f alone, f = v, or in
    f and the seed: the seed replicates of that level. The base value is a level of every factor,
    with base and the runs that differ from it in the seed alone; a factor crossed with seeds (named
    `runs` that change both) gets replicates at its other levels too. Levels are sorted where they
    are numbers, else base first, then as listed.
    """
    runs = expand_runs(config)
    base = runs["base"]
    # data_dir follows the task: a task ablation differs in both, and counts as differing in one.
    changed = {
        name: {key for key in run if key != "data_dir" and run[key] != base[key]}
        for name, run in runs.items()
    }
    levels = {}
    for factor, values in config["ablations"].items():
        ordered = []
        for value in [base[factor], *values]:
            if value not in ordered:
                ordered.append(value)
        if all(isinstance(v, int | float) and not isinstance(v, bool) for v in ordered):
            ordered.sort()
        levels[factor] = [
            (
                value,
                [
                    name
                    for name, run in runs.items()
                    if changed[name] <= {factor, "seed"} and run[factor] == value
                ],
            )
            for value in ordered
        ]
    return levels


def ablation_names(config: dict) -> set[str]:
    return {f"{factor}={format_value(v)}" for factor, vs in config["ablations"].items() for v in vs}
