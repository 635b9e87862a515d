"""Workflow config: validation against the JSON schema (filling defaults) and the checks beyond
what a schema can state (sizes, factories, the runs' names); a config read from text or a file.

Pure Python on purpose (no torch import): the Snakefile imports it on every invocation.

    >>> cfg = validate_config({"ablations": {"seed": [1]}}, "workflow/schemas/config.schema.yaml")
    >>> sorted(expand_runs(cfg))   # runs.py
    ['base', 'seed=1']
"""

from __future__ import annotations

import copy
import difflib
import functools
import json
import math
from decimal import Decimal
from pathlib import Path

import yaml
from jsonschema import Draft202012Validator, validators

from nowrongturns.config import sizes
from nowrongturns.config.factories import factories, is_factory, standard_library
from nowrongturns.config.runs import ablation_names, expand_runs, run_sources

# Tasks whose data are read from a directory (config key `data`), not shipped with a package.
LOCAL_TASKS = ("cifar10", "cifar100", "imagenet", "wikitext2", "vaihingen")


# Tasks whose answer is known by construction (tasks/synthetic.py): the contrasting examples, set
# beside the real networks. quadratic is benign by construction; rosenbrock takes wrong turns.
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
    """jsonschema's message, or for a value that may take several forms, what each form is; an
    unknown key or value followed by the nearest known one."""
    if error.validator == "anyOf":
        forms = "; ".join(form.get("description", str(form)) for form in error.validator_value)
        names = [name for form in error.validator_value for name in form.get("enum", [])]
        nearest = _did_you_mean(error.instance, names) if isinstance(error.instance, str) else ""
        return f"{error.instance!r} is none of: {forms}{nearest}"
    if error.validator == "additionalProperties" and isinstance(error.instance, dict):
        known = list(error.schema.get("properties", {}))
        unknown = [key for key in error.instance if key not in known]
        return error.message + "".join(_did_you_mean(key, known) for key in unknown)
    if error.validator == "enum" and isinstance(error.instance, str):
        return error.message + _did_you_mean(error.instance, error.validator_value)
    if error.validator == "propertyNames" and isinstance(error.instance, dict):
        names = error.validator_value.get("enum", [])
        unknown = [key for key in error.instance if names and key not in names]
        return error.message + "".join(_did_you_mean(key, names) for key in unknown)
    return error.message


def _did_you_mean(word: str, known) -> str:
    """`; did you mean 'lr'?` for the known word nearest `word`, where one is near enough."""
    nearest = difflib.get_close_matches(str(word), [str(name) for name in known], n=1)
    return f"; {word!r}: did you mean {nearest[0]!r}?" if nearest else ""


def _run_key(prefix: str, error) -> str:
    """Where an error inside a run points: `runs.x.lr`, `ablations.lr[0]`, `runs.x` itself."""
    path = _key_path(error)
    return prefix if path == "(top level)" else f"{prefix}.{path}"


def _check(instance: dict, schema: dict, what: str, prefix: str = "") -> None:
    errors = sorted(_DefaultingValidator(schema).iter_errors(instance), key=lambda e: list(e.path))
    if errors:
        lines = [f"  {prefix}{_key_path(e)}: {_message(e)}" for e in errors]
        raise ConfigError(f"invalid {what}:\n" + "\n".join(lines))


def load_schema(schema_path: str | Path) -> dict:
    return copy.deepcopy(_schema(schema_path))


def _schema(schema_path: str | Path) -> dict:
    """The schema, read once per version of the file (every trajectory opened checks against it)."""
    return _read_schema(str(schema_path), Path(schema_path).stat().st_mtime_ns)


@functools.cache
def _read_schema(schema_path: str, modified: int) -> dict:
    with open(schema_path) as handle:  # libyaml's safe loader where there is one: 10x faster
        return yaml.load(handle, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))


def default_schema() -> Path:
    """The workflow's config schema: beside the package in a checkout (src layout), else as seen
    from the working directory, the workflow's."""
    beside = Path(__file__).resolve().parents[3] / "workflow/schemas/config.schema.yaml"
    return beside if beside.is_file() else Path("workflow/schemas/config.schema.yaml")


def validate_run(run: dict, schema_path: str | Path | None = None, what: str = "run config"):
    """A run config (`base`'s keys, and `data_dir`) checked against the schema of `base`, with
    every default filled in: what a partial run config means. Only what the schema states; a
    ConfigError names each key."""
    run = copy.deepcopy(dict(run))
    data_dir = run.pop("data_dir", "")
    _check(run, _schema(schema_path or default_schema())["properties"]["base"], what)
    return {**run, "data_dir": data_dir}


def complete_run(run: dict, schema_path: str | Path | None = None) -> dict:
    """A run config as `nwt train` takes it, whole or partial: checked as the base run of a
    workflow config (the schema's defaults filled in, and what would fail inside its job), its
    keys in the order given, then the defaults."""
    run = copy.deepcopy(dict(run))
    data_dir = run.pop("data_dir", "")
    data = {run.get("task"): data_dir} if run.get("task") in LOCAL_TASKS and data_dir else {}
    config = validate_config({"base": run, "data": data}, schema_path or default_schema())
    whole = expand_runs(config)["base"]
    return {**{key: whole[key] for key in run}, **whole, "data_dir": data_dir}


def validate_config(config: dict, schema_path: str | Path) -> dict:
    """Return a validated copy of `config` with every default filled in.

    Raises ConfigError naming each offending key, e.g. ``base.lr: 'fast' is not of type 'number'``.
    Ablation values are checked against the schema of the `base` key they replace; then what
    the schema cannot state (`_check_beyond_schema`).
    """
    schema = load_schema(schema_path)
    config = copy.deepcopy(dict(config))
    _check(config, schema, "config")
    _analysis_settings(config["analyses"], schema["properties"]["analyses"])
    base_schema = schema["properties"]["base"]
    for factor, values in config["ablations"].items():
        if factor not in base_schema["properties"]:
            known = ", ".join(base_schema["properties"])
            nearest = _did_you_mean(factor, base_schema["properties"])
            raise ConfigError(
                f"invalid config:\n  ablations.{factor}: not a run setting{nearest} "
                f"(one of: {known})"
            )
        for index, value in enumerate(values):
            run = {**copy.deepcopy(config["base"]), factor: value}
            # Errors name the ablation entry, not the base key it overrides.
            errors = list(_DefaultingValidator(base_schema).iter_errors(run))
            if errors:
                where = f"ablations.{factor}[{index}]"
                where += "".join(f".{part}" for part in list(errors[0].absolute_path)[1:])
                raise ConfigError(f"invalid config:\n  {where}: {_message(errors[0])}")
    for name, changes in config["runs"].items():
        if name in {"base", *ablation_names(config)}:
            raise ConfigError(f"invalid config:\n  runs.{name}: the name of another run")
        errors = list(_DefaultingValidator(base_schema).iter_errors({**config["base"], **changes}))
        if errors:
            lines = [f"  {_run_key(f'runs.{name}', error)}: {_message(error)}" for error in errors]
            raise ConfigError("invalid config:\n" + "\n".join(lines))
    for name, run in expand_runs(config).items():
        if run["task"] in LOCAL_TASKS and not run["data_dir"]:
            raise ConfigError(
                f"invalid config:\n  data.{run['task']}: missing; run {name!r} trains on "
                f"{run['task']}, which is read from a directory that `data` must name"
            )
    _check_beyond_schema(config)
    return config


def _code_problems(run: dict) -> list[tuple[str, str]]:
    """(key, problem) for the code a run names: never a standard-library factory, and
    optimizer_options only where a torch.optim optimizer takes them (lr and weight_decay are run
    keys of their own)."""
    problems = [
        (key, f"{factory!r} is a standard-library callable, never a factory")
        for key, factory in factories(run).items()
        if standard_library(factory)
    ]
    options = run["optimizer_options"]
    if options and not run["optimizer"].startswith("torch.optim."):
        why = f"for a 'torch.optim.<Name>' optimizer; optimizer {run['optimizer']!r} takes none"
        problems.append(("optimizer_options", why))
    problems += [
        ("optimizer_options", f"{key}: set the run key `{key}` instead")
        for key in ("lr", "weight_decay")
        if key in options
    ]
    return problems


def _non_finite_numbers(value, path: str = "") -> list[str]:
    """`key: problem` lines for every NaN or infinity anywhere in a config (YAML's .nan, .inf):
    the schema's bounds let NaN through, as every comparison with it is false."""
    if isinstance(value, float) and not math.isfinite(value):
        return [f"{path or '(top level)'}: {value} is not a finite number"]
    if isinstance(value, dict):
        items = ((f"{path}.{key}" if path else str(key), item) for key, item in value.items())
    elif isinstance(value, list):
        items = ((f"{path}[{index}]", item) for index, item in enumerate(value))
    else:
        return []
    return [line for item_path, item in items for line in _non_finite_numbers(item, item_path)]


def _setting_problems(run: dict, config: dict) -> list[tuple[str, str]]:
    """(key, problem) of the settings any run can be checked for, whatever code it names."""
    problems = []
    if run["schedule"] == "file" and not Path(run["schedule_file"]).is_file():
        why = f"{run['schedule_file']!r}: no such file (schedule: file reads the lr from it)"
        problems.append(("schedule_file", why))
    processes, batch = config["train"]["processes"], run["batch_size"]
    shards = processes * run["batch_shards"]
    if batch % shards:
        why = (
            f"{batch} does not divide into train.processes x batch_shards = "
            f"{processes} x {run['batch_shards']} shards"
        )
        problems.append(("batch_size", why))
    return problems


def _run_problems(run: dict, config: dict) -> list[tuple[str, str]]:
    """(key, problem) for what would fail or overflow inside this run's jobs; the key is a run
    key, a dotted key of the config (measure.full_batch_chunk), or "" for the run as a whole."""
    model, task = run["model"], run["task"]
    problems = _code_problems(run) + _setting_problems(run, config)
    if model not in sizes.MODELS or is_factory(task):
        return problems  # what your own code holds is known only once it is imported (a job)
    facts = sizes.task_facts(run)
    kind = sizes.MODELS[model][0]
    if kind != facts.kind:
        fitting = ", ".join(name for name, spec in sizes.MODELS.items() if spec[0] == facts.kind)
        why = f"{model} is a {kind} model, but task {task} is a {facts.kind} task, for {fitting}"
        return [*problems, ("model", why)]  # nothing else can be counted
    if model == "transformer" and run["width"] % run["heads"]:
        why = f"{run['heads']} heads do not divide width {run['width']} (the d_model)"
        problems.append(("heads", why))
    side = min(facts.input_shape[1:], default=0)
    if model in ("unet", "segnet") and side < 2 ** run["depth"]:
        why = (
            f"{model} of depth {run['depth']} halves the {side}-pixel inputs of task {task} "
            f"below one pixel (depth <= {int(math.log2(side))})"
        )
        problems.append(("depth", why))
    if model in ("resnet18", "resnet50", "resnet152") and int(64 * run["width_multiplier"]) < 1:
        why = f"{run['width_multiplier']} leaves int(64 x it) = 0 channels in the first stage"
        problems.append(("width_multiplier", why))
    if task == "pydoc" and facts.train_examples == 0:
        why = f"{run['context']}: no window of context + 1 characters leaves a training example"
        problems.append(("context", why))
    elif facts.exact and run["batch_size"] > facts.train_examples:
        at = f" at context {run['context']}" if task == "pydoc" else ""
        why = f"{run['batch_size']} exceeds the {facts.train_examples} training examples"
        problems.append(("batch_size", f"{why} of task {task}{at}"))
    batch, shards = run["batch_size"], config["train"]["processes"] * run["batch_shards"]
    pixels = sizes.smallest_batchnorm_map(run, facts)
    # BatchNorm in train mode needs two values per channel: examples x pixels of its map.
    if pixels and batch // shards * pixels < 2:  # (0 pixels: depth is refused above)
        why = (
            f"{batch} in {shards} shard(s) (train.processes x batch_shards) gives the BatchNorm "
            f"of {model}'s {pixels}-pixel map one value per channel; training needs two "
            f"(batch_size >= {-(-2 // pixels) * shards})"
        )
        problems.append(("batch_size", why))
    measure = config["measure"]
    chunk = measure["full_batch_chunk"]
    # (a batch smaller than its shards is refused above; one example a chunk here)
    chunk = max(1, batch // shards) if chunk == "batch" else chunk
    last_chunk = facts.train_examples % chunk
    if pixels == 1 and measure["full_batch"] and facts.exact and last_chunk == 1:
        why = (
            f"{measure['full_batch_chunk']} leaves one example in the last chunk of the "
            f"full-batch pass ({chunk} a chunk), one value per channel for the BatchNorm of "
            f"{model}'s 1-pixel map"
        )
        problems.append(("measure.full_batch_chunk", why))
    every_epochs = run["checkpoint"]["every_epochs"]
    if every_epochs is not None and every_epochs * (facts.train_examples // batch) < 1:
        why = (
            f"{every_epochs} epochs of {facts.train_examples // batch} steps is less than one "
            "step between checkpoints"
        )
        problems.append(("checkpoint", why))
    if problems:
        return problems
    max_bytes = config["train"]["max_checkpoint_gb"] * 1e9
    planned = sizes.planned_trajectory(run)
    total = planned["checkpoint_bytes"] + planned["step_bytes"]
    if total > max_bytes:
        each = _gigabytes(planned["checkpoint_bytes"] // planned["checkpoints"])
        why = (
            f"its trajectory would take about {_gigabytes(total)} GB ({planned['checkpoints']} "
            f"checkpoints of {each} GB, {planned['steps']} steps), over "
            f"train.max_checkpoint_gb = {max_bytes / 1e9:g}: checkpoint less often "
            "(checkpoint.every), train fewer epochs, or raise train.max_checkpoint_gb; "
            f"{planned['examples']} training examples, {_counted_from(facts)}"
        )
        problems.append(("", why))
    return problems


def _counted_from(facts: sizes.TaskFacts) -> str:
    """Where a plan's count of training examples comes from, in words."""
    return {
        "task": "counted from the task",
        "data_dir": "counted in data_dir",
        "official size": "the official release's size (data_dir absent)",
    }[facts.counted_from]


def _gigabytes(count: int) -> str:
    """`count` bytes in GB, to 3 digits; as a Decimal where a float would overflow (the sizes of
    absurd configs, a cnn 1000 blocks deep)."""
    return f"{count / 1e9:.3g}" if count < 1e300 else f"{Decimal(count) / 10**9:.3g}"


def _analysis_settings(analyses: dict, schema: dict) -> None:
    """`true` is an analysis with its default settings: made those settings, so that the rules
    see one form, a mapping of settings (on) or false (off)."""
    for name, value in analyses.items():
        if value is True:
            analyses[name] = {}
            _check(analyses[name], schema["properties"][name], "config", f"analyses.{name}.")


def _check_beyond_schema(config: dict) -> None:
    """What a schema cannot state, checked before any job: finite numbers (the schema's bounds
    let NaN through, as every comparison with it is false), then per run what would fail or
    overflow inside its train job. Each problem once, under the config key that sets the value
    (`run_sources`). Pure Python, counted by sizes.py."""
    problems = _non_finite_numbers(config)
    if not problems:
        runs, found = expand_runs(config), {}
        for name, (run_key, own_keys) in run_sources(config).items():
            for key, problem in _run_problems(runs[name], config):
                where = key if "." in key else own_keys.get(key, f"base.{key}") if key else run_key
                found.setdefault(where, f"{problem} (run {name!r})")
        problems = [f"{where}: {problem}" for where, problem in found.items()]
    if problems:
        raise ConfigError("invalid config:\n" + "\n".join(f"  {line}" for line in problems))


def load_config(text_or_path: str, what: str = "run config") -> dict:
    """A config (a run's, or the workflow's) given inline as JSON, as the workflow passes it, or as
    a YAML/JSON file."""
    if text_or_path.lstrip().startswith("{"):
        return json.loads(text_or_path)
    path = Path(text_or_path)
    if not path.is_file():
        raise ConfigError(f"{what} {path}: no such file (or pass inline JSON)")
    with open(path) as handle:
        config = yaml.safe_load(handle)
    if not isinstance(config, dict):
        raise ConfigError(f"{what} {path}: holds {type(config).__name__}, not a mapping of keys")
    return config
