"""Workflow config: validation against the JSON schema (filling defaults) and expansion into runs.

Pure Python on purpose (no torch import): the Snakefile imports it on every invocation.

    >>> cfg = validate_config({"ablations": {"seed": [1]}}, "workflow/schemas/config.schema.yaml")
    >>> sorted(expand_runs(cfg))
    ['base', 'seed=1']
    >>> ablation_levels(cfg)
    {'seed': [(0, ['base']), (1, ['seed=1'])]}
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import yaml
from jsonschema import Draft202012Validator, validators

from .factories import FactoryError, factories, refuse_standard_library

# Tasks whose data are read from a directory (config key `data`), not shipped with a package.
LOCAL_TASKS = ("cifar10", "cifar100", "imagenet", "wikitext2", "vaihingen")
# Tasks whose answer is known by construction (data.py): the contrasting examples, set beside the
# real networks. quadratic is benign by construction; rosenbrock takes wrong turns.
SYNTHETIC_TASKS = ("quadratic", "rosenbrock")


class ConfigError(ValueError):
    """A config value that the workflow cannot use; the message names the key."""


def _with_defaults(validator_class):
    """The jsonschema recipe that fills in `default` values while validating."""
    validate_properties = validator_class.VALIDATORS["properties"]

    def set_defaults(validator, properties, instance, schema):
        if isinstance(instance, dict):
            for key, subschema in properties.items():
                if "default" in subschema:
                    instance.setdefault(key, copy.deepcopy(subschema["default"]))
        yield from validate_properties(validator, properties, instance, schema)

    return validators.extend(validator_class, {"properties": set_defaults})


_DefaultingValidator = _with_defaults(Draft202012Validator)


def _key_path(error) -> str:
    parts = [f"[{p}]" if isinstance(p, int) else f".{p}" for p in error.absolute_path]
    return "".join(parts).lstrip(".") or "(top level)"


def _message(error) -> str:
    """jsonschema's message, or for a value that may take several forms, what each form is."""
    if error.validator != "anyOf":
        return error.message
    forms = "; ".join(form.get("description", str(form)) for form in error.validator_value)
    return f"{error.instance!r} is none of: {forms}"


def _check(instance: dict, schema: dict, what: str, prefix: str = "") -> None:
    errors = sorted(_DefaultingValidator(schema).iter_errors(instance), key=lambda e: list(e.path))
    if errors:
        lines = [f"  {prefix}{_key_path(e)}: {_message(e)}" for e in errors]
        raise ConfigError(f"invalid {what}:\n" + "\n".join(lines))


def load_schema(schema_path: str | Path) -> dict:
    with open(schema_path) as handle:
        return yaml.safe_load(handle)


def validate_config(config: dict, schema_path: str | Path) -> dict:
    """Return a validated copy of `config` with every default filled in.

    Raises ConfigError naming each offending key, e.g. ``base.lr: 'fast' is not of type 'number'``.
    Ablation values are checked against the schema of the `base` key they replace.
    """
    schema = load_schema(schema_path)
    config = copy.deepcopy(dict(config))
    _check(config, schema, "config")
    base_schema = schema["properties"]["base"]
    for factor, values in config["ablations"].items():
        if factor not in base_schema["properties"]:
            known = ", ".join(base_schema["properties"])
            raise ConfigError(
                f"invalid config:\n  ablations.{factor}: not a run setting (one of: {known})"
            )
        for index, value in enumerate(values):
            run = {**copy.deepcopy(config["base"]), factor: value}
            # Errors name the ablation entry, not the base key it overrides.
            errors = list(_DefaultingValidator(base_schema).iter_errors(run))
            if errors:
                raise ConfigError(
                    f"invalid config:\n  ablations.{factor}[{index}]: {_message(errors[0])}"
                )
    for name, changes in config["runs"].items():
        if name in {"base", *_ablation_names(config)}:
            raise ConfigError(f"invalid config:\n  runs.{name}: the name of another run")
        errors = list(_DefaultingValidator(base_schema).iter_errors({**config["base"], **changes}))
        if errors:
            raise ConfigError(f"invalid config:\n  runs.{name}: {_message(errors[0])}")
    for name, run in expand_runs(config).items():
        _check_code(run, _where(config, name))
        if run["task"] in LOCAL_TASKS and not run["data_dir"]:
            raise ConfigError(
                f"invalid config:\n  data.{run['task']}: missing; run {name!r} trains on "
                f"{run['task']}, which is read from a directory that `data` must name"
            )
    return config


def _where(config: dict, run_name: str) -> str:
    """Where a run's settings are written in the config: base, runs.NAME or ablations.FACTOR."""
    if run_name == "base" or run_name in config["runs"]:
        return "base" if run_name == "base" else f"runs.{run_name}"
    return f"ablations.{run_name.split('=')[0]}"


def _check_code(run: dict, where: str) -> None:
    """The code a run names: no standard-library factory, and optimizer_options only where a
    torch.optim optimizer takes them (lr and weight_decay are run keys of their own)."""
    try:
        for key, factory in factories(run).items():
            refuse_standard_library(key, factory, f"{where}.")
    except FactoryError as error:
        raise ConfigError(f"invalid config:\n  {error}") from None
    options = run["optimizer_options"]
    if options and not run["optimizer"].startswith("torch.optim."):
        raise ConfigError(
            f"invalid config:\n  {where}.optimizer_options: for a 'torch.optim.<Name>' optimizer; "
            f"optimizer {run['optimizer']!r} takes none"
        )
    for key in ("lr", "weight_decay"):
        if key in options:
            raise ConfigError(
                f"invalid config:\n  {where}.optimizer_options.{key}: set the run key `{key}` "
                "instead (the lr comes from the schedule)"
            )


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


def _ablation_names(config: dict) -> set[str]:
    return {f"{factor}={format_value(v)}" for factor, vs in config["ablations"].items() for v in vs}


def load_config(text_or_path: str, what: str = "run config") -> dict:
    """A config (a run's, or the workflow's) given inline as JSON, as the workflow passes it, or as
    a YAML/JSON file."""
    if text_or_path.lstrip().startswith("{"):
        return json.loads(text_or_path)
    path = Path(text_or_path)
    if not path.is_file():
        raise ConfigError(f"{what} {path}: no such file (or pass inline JSON)")
    with open(path) as handle:
        return yaml.safe_load(handle)
