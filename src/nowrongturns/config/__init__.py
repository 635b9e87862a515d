"""The workflow config: validated against the schema (validation.py), expanded into runs
(runs.py), sized without torch (sizes.py), and the code it may name (factories.py). Importing
this package imports no torch: the Snakefile imports it on every invocation.
"""

from nowrongturns.config.runs import (
    ablation_levels,
    ablation_names,
    expand_runs,
    format_value,
    run_sources,
    seed_siblings,
)
from nowrongturns.config.validation import (
    LOCAL_TASKS,
    SYNTHETIC_TASKS,
    ConfigError,
    complete_run,
    default_schema,
    load_config,
    load_schema,
    validate_config,
    validate_run,
)

__all__ = [
    "LOCAL_TASKS",
    "SYNTHETIC_TASKS",
    "ConfigError",
    "complete_run",
    "default_schema",
    "ablation_levels",
    "ablation_names",
    "expand_runs",
    "format_value",
    "load_config",
    "load_schema",
    "run_sources",
    "seed_siblings",
    "validate_config",
    "validate_run",
]
