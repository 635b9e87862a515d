"""The data directories a config names, checked before any job: that each one a run trains on
exists and holds the first files of its task's layout. A wrong path then stops `snakemake -n`
naming the key, not the first train job on a cluster node, minutes later, in its log.

    check_data_directories(validate_config(config, schema))
"""

from __future__ import annotations

from pathlib import Path

from nowrongturns.config.runs import expand_runs
from nowrongturns.config.validation import ConfigError

# The first paths of each task's layout under its data directory (tasks/local.py and
# tasks/vaihingen.py read the rest, and name what else is missing).
FIRST_FILES = {
    "cifar10": ["cifar-10-batches-py/data_batch_1", "cifar-10-batches-py/batches.meta"],
    "cifar100": ["cifar-100-python/train", "cifar-100-python/meta"],
    "imagenet": ["train", "val"],
    "wikitext2": ["wiki.train.tokens", "wiki.valid.tokens"],
    "vaihingen": ["top", "gts_for_participants"],
}


def data_directory_problems(config: dict) -> list[str]:
    """`data.<task>: problem` for each data directory a run of the config trains on."""
    problems, runs_of = [], {}
    for name, run in expand_runs(config).items():
        if run["task"] in FIRST_FILES:
            runs_of.setdefault(run["task"], []).append(name)
    for task, runs in runs_of.items():
        root = Path(config["data"][task]).expanduser()
        trains = f"run {runs[0]!r}" + (f" and {len(runs) - 1} more" if len(runs) > 1 else "")
        expected = ", ".join(FIRST_FILES[task])
        if not root.is_dir():
            what = "is not a directory" if root.exists() else "does not exist"
            problems.append(
                f"data.{task}: {str(root)!r} {what} ({trains} trains on {task}, read from a "
                f"directory holding {expected})"
            )
            continue
        missing = [path for path in FIRST_FILES[task] if not (root / path).exists()]
        if missing:
            problems.append(
                f"data.{task}: {str(root)!r} has no {', '.join(missing)} ({trains} trains on "
                f"{task}, read from a directory holding {expected})"
            )
    return problems


def check_data_directories(config: dict) -> None:
    """Raise a ConfigError naming the key and path of each data directory that is not there."""
    problems = data_directory_problems(config)
    if problems:
        raise ConfigError("invalid config:\n" + "\n".join(f"  {line}" for line in problems))
