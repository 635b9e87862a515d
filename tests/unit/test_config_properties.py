"""Every config validation accepts trains; every one it refuses names a key (issue 17).

Hypothesis mutates the repo's config.yaml: one to three edits, each replacing a value (at any
depth: a run setting, an ablation value, a stage setting), adding a key the schema knows (or one
it does not) with a value, or deleting a key. The values are the edges validation must see:
NaN, infinities, signs, zero, fractions, integers past int64 and 2^64 where the schema wants an
integer, every enum value, wrong types. A refused config must raise ConfigError whose every line
names a key of the config; an accepted one must train, in this process, through the real
`train()`: every run that the edits changed, two optimizer steps (so that momentum's buffer is
used once), to a complete trajectory with finite losses and weights. Two steps, not the run's
whole length, and validation on its first examples, keep an example near a tenth of a second;
the settings themselves (the run's epochs, sizes, schedule) are the mutated ones.
"""

import copy
import itertools
import math
import re
import tempfile
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from helpers.runs import REPO, SCHEMA
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from nowrongturns.config import ConfigError, expand_runs, validate_config
from nowrongturns.train import stage as train_stage
from nowrongturns.trajectory.reader import TrajectoryReader

DEFAULT = yaml.safe_load((REPO / "config.yaml").read_text())
DEFAULT_VALIDATED = validate_config(DEFAULT, SCHEMA)
DEFAULT_RUNS = expand_runs(DEFAULT_VALIDATED)
SCHEMA_DOCUMENT = yaml.safe_load(SCHEMA.read_text())
BASE_KEYS = SCHEMA_DOCUMENT["properties"]["base"]["properties"]
SMOKE_STEPS = 2
VALIDATION_EXAMPLES = 64

REALS = [math.nan, math.inf, -math.inf, -1.0, 0.0, 1e-9, 0.5, 0.999, 1.5, 3.0]
INTEGERS = [-1, 0, 1, 2, 3, 5, 2**31, 2**63 - 1, 2**63, 2**64, 2**70]
OTHERS = [True, None, "x", "", [], [1], {}]


def resolved(node: dict) -> dict:
    if "$ref" not in node:
        return node
    return {**SCHEMA_DOCUMENT["$defs"][node["$ref"].split("/")[-1]], **node}


def schema_at(path: tuple) -> dict:
    """The schema of the value at `path` ({} where the schema says nothing of it): an ablation
    factor is a list of values of that base key, a named run a base."""
    if path[0] == "ablations" and len(path) > 1:
        node, rest = {"type": "array", "items": BASE_KEYS.get(path[1], {})}, path[2:]
    elif path[0] == "runs" and len(path) > 1:
        node, rest = SCHEMA_DOCUMENT["properties"]["base"], path[2:]
    else:
        node, rest = SCHEMA_DOCUMENT, path
    for part in rest:
        node = resolved(node)
        node = (
            node.get("items", {})
            if isinstance(part, int)
            else node.get("properties", {}).get(part, {})
        )
    return resolved(node)


def candidate_values(path: tuple) -> list:
    """The edge values for the key at `path`: its enum values, numbers of its type, wrong types;
    a list of one such value where it takes a list."""
    node = schema_at(path)
    if node.get("type") == "array" and "items" in node:
        return [[value] for value in candidate_values_of(resolved(node["items"]))] + OTHERS
    return candidate_values_of(node)


def candidate_values_of(node: dict) -> list:
    kinds = node.get("type", [])
    kinds = [kinds] if isinstance(kinds, str) else kinds
    values = list(node.get("enum", []))
    if "integer" in kinds:
        values += INTEGERS
    if "number" in kinds:
        values += REALS + INTEGERS[:6]
    return values + OTHERS


def paths(value, prefix: tuple = ()) -> list[tuple]:
    """The path of every key and list entry below `value`."""
    found = []
    items = value.items() if isinstance(value, dict) else enumerate(value)
    for key, item in items:
        found.append((*prefix, key))
        if isinstance(item, dict | list):
            found += paths(item, (*prefix, key))
    return found


def node_at(config, path: tuple):
    """The value at `path`, or None where there is none."""
    for part in path:
        if not isinstance(config, dict | list) or part not in (
            config if isinstance(config, dict) else range(len(config))
        ):
            return None
        config = config[part]
    return config


@st.composite
def mutated_configs(draw):
    config = copy.deepcopy(DEFAULT)
    for _ in range(draw(st.integers(1, 3))):
        kind = draw(st.sampled_from(["replace", "replace", "add", "delete"]))
        if kind == "add":
            runs = node_at(config, ("runs",))
            named = runs if isinstance(runs, dict) else {}  # an earlier edit may have made it 1
            sections = [
                ("base",),
                ("ablations",),
                ("train",),
                ("measure",),
                ("schedule",),
                *(("runs", name) for name in named),
            ]
            section = draw(st.sampled_from(sections))
            if not isinstance(node_at(config, section), dict):
                continue
            stage = section[0] in ("train", "measure", "schedule")
            known = schema_at(section).get("properties", {}) if stage else BASE_KEYS
            path = (*section, draw(st.sampled_from([*known, "colour"])))
        else:
            path = draw(st.sampled_from(paths(config)))
        if "device" in path:  # which devices there are is the machine's, not the config's
            continue
        holder = node_at(config, path[:-1])
        if kind == "delete":
            del holder[path[-1]]
        else:
            holder[path[-1]] = copy.deepcopy(draw(st.sampled_from(candidate_values(path))))
    return config


KEY_LINE = re.compile(r"  (\(top level\)|[a-z_]+(?:\.[^\s:\[]+|\[\d+\])*): \S")


def names_a_key(line: str, config: dict) -> bool:
    """Whether an error line starts with a key path into the config: each part there, or a key
    the schema knows there (a section or key left to its default), or, last, the key at fault."""
    match = KEY_LINE.match(line)
    if not match:
        return False
    if match.group(1) == "(top level)":
        return True
    parts = [
        int(part[1:-1]) if part.startswith("[") else part
        for part in re.findall(r"[^.\[\]]+|\[\d+\]", match.group(1))
    ]
    for end in range(1, len(parts)):
        prefix = tuple(parts[:end])
        if node_at(config, prefix) is None and not schema_at(prefix):
            return False
    return True


@pytest.fixture(scope="module")
def smoke_training():
    """train() as the workflow runs it, stopped after SMOKE_STEPS steps, its validation on the
    first VALIDATION_EXAMPLES examples."""
    with pytest.MonkeyPatch.context() as patch:
        minibatches, evaluate = train_stage.minibatches, train_stage.evaluate

        def first_steps(*args):
            return itertools.islice(minibatches(*args), SMOKE_STEPS)

        def evaluate_first(model, task, **options):
            validation = copy.copy(task.validation)
            validation.inputs = validation.inputs[:VALIDATION_EXAMPLES]
            validation.targets = validation.targets[:VALIDATION_EXAMPLES]
            return evaluate(model, replace(task, validation=validation), **options)

        patch.setattr(train_stage, "minibatches", first_steps)
        patch.setattr(train_stage, "evaluate", evaluate_first)
        threads = torch.get_num_threads()
        yield train_stage.train
        torch.set_num_threads(threads)


# Derandomized, no example database: CI draws the same 200 configs every time.
@pytest.mark.slow
@settings(
    max_examples=200,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(config=mutated_configs())
def test_every_mutation_of_config_yaml_trains_or_is_refused_naming_a_key(config, smoke_training):
    try:
        validated = validate_config(config, SCHEMA)
    except ConfigError as error:
        lines = str(error).splitlines()
        assert lines[0] == "invalid config:" and len(lines) > 1, str(error)
        assert all(names_a_key(line, config) for line in lines[1:]), str(error)
        event("refused")  # --hypothesis-show-statistics counts them
        return
    same_training = training_settings(validated) == training_settings(DEFAULT_VALIDATED)
    changed = {
        name: run
        for name, run in expand_runs(validated).items()
        if not same_training or DEFAULT_RUNS.get(name) != run
    }
    event(f"accepted, {len(changed)} runs changed")  # the others: config.yaml's, tested below
    assert_trains(changed, validated, smoke_training)


def test_config_yaml_itself_trains_in_the_smoke(smoke_training):
    assert_trains(DEFAULT_RUNS, DEFAULT_VALIDATED, smoke_training)


def training_settings(config: dict) -> tuple:
    """What a train job takes besides its run: `nwt train --precision --data-workers --threads`."""
    train = config["train"]
    return train["precision"], train["data_workers"], config["resources"]["train"]["threads"]


def assert_trains(runs: dict[str, dict], config: dict, smoke_training) -> None:
    """Each run trains SMOKE_STEPS steps to a complete trajectory, finite losses and weights,
    with the thread count, precision and loader workers of `config` (on the CPU: the device is
    the machine's)."""
    torch.set_num_threads(config["resources"]["train"]["threads"])  # as `nwt train --threads`
    with tempfile.TemporaryDirectory() as folder:
        for index, (name, run) in enumerate(runs.items()):
            path = Path(folder) / f"{index}.h5"
            status = smoke_training(
                run,
                path,
                device="cpu",
                run_name=name,
                precision=config["train"]["precision"],
                data_workers=config["train"]["data_workers"],
            )
            assert status == "complete", (name, run)
            with TrajectoryReader(path) as traj:
                assert np.isfinite(traj.steps("loss")[:SMOKE_STEPS]).all(), (name, run)
                assert np.isfinite(traj.weights(-1)).all(), (name, run)
