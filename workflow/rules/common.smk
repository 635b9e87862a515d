import glob
import json
import re
import shlex
from pathlib import Path

# Snakemake's report(): under another name, since a line that starts with `report` reads as the
# report: keyword.
from snakemake.io import report as report_flag

from nowrongturns.config import (
    SYNTHETIC_TASKS,
    ConfigError,
    ablation_levels,
    expand_runs,
    load_schema,
    seed_siblings,
    validate_config,
)
from nowrongturns.config.command_line import parse_command_line_values
from nowrongturns.config.data_dirs import check_data_directories
from nowrongturns.config.factories import factories, module_file

SCHEMA = Path(workflow.current_basedir) / "../schemas/config.schema.yaml"
try:
    # --config's nested values arrive as strings ('0.2'); then every key, and the data
    # directories the runs read, before any job.
    validated = validate_config(
        parse_command_line_values(config, load_schema(SCHEMA)), SCHEMA
    )
    check_data_directories(validated)
except ConfigError as error:
    raise WorkflowError(f"{error}\n(schema: {SCHEMA.resolve()})") from None
config.clear()
config.update(validated)

RUNS = expand_runs(config)
# The run differing from each in its seed alone, where there is one: its final point is the
# control w*' of gamma_other (docs/quantities.md#the-controls).
SEED_SIBLINGS = seed_siblings(RUNS)
RUN_TABLES = [
    "trajectory.h5",
    "geometry.parquet",
    "schedule.csv",
    "schedule.json",
    "bound.csv",
]
DENSE = config["measure"]["dense"]
FIGURE_FORMAT = config["figures"]["format"]
# The figures of each run and their report category; report/figures.py RUN_FIGURES draws each from the
# tables FIGURE_TABLES lists, and workflow/report/{name}.rst is its caption.
RUN_FIGURES = {"geometry": "Per run", "schedule": "Schedules", "bound": "Schedules"}
FIGURE_TABLES = ["geometry.parquet", "schedule.csv", "schedule.json", "bound.csv"]
if DENSE:
    RUN_FIGURES["dense"] = "Per run"
    FIGURE_TABLES.append("dense.parquet")
# gamma per parameter tensor (measure.layers): each measure job writes it beside its table.
LAYERS = config["measure"]["layers"]
if LAYERS:
    RUN_FIGURES["layers"] = "Per run"
    FIGURE_TABLES.append("layers.parquet")
    RUN_TABLES.append("layers.parquet")
# Other endpoints than w_T (measure.endpoints), measured on the base run.
ENDPOINTS = config["measure"]["endpoints"]
ENDPOINT_RUNS = ["base"] if ENDPOINTS["progress"] or ENDPOINTS["continue"] else []
# The analyses that are on (config `analyses`: each a mapping of its settings, or false), their
# tables and figures (report/analysis_figures.py ANALYSIS_FIGURES draws each).
ANALYSES = {name: settings for name, settings in config["analyses"].items() if settings}
ANALYSIS_TABLES = [f"{name}.parquet" for name in ANALYSES]
for name in ANALYSES:
    RUN_FIGURES[name] = "Per run"
FIGURE_TABLES.extend(ANALYSIS_TABLES)
# The closed loop: the base run retrained on each of these schedules (config schedule.retrain).
LOOP_SCHEDULES = {"derived": "schedule.json", "cosine": "cosine.json"}
# (Not a run the config imports: the loop trains it again, which needs our training of it.)
RETRAINED = (
    ["base"]
    if config["schedule"]["retrain"] and "trajectory_from" not in config["base"]
    else []
)
ABLATION_LEVELS = ablation_levels(config)
SYNTHETIC_RUNS = [name for name, run in RUNS.items() if run["task"] in SYNTHETIC_TASKS]
# The contrasting figure sets networks beside synthetic objectives: it needs one of each.
CONTRAST = 0 < len(SYNTHETIC_RUNS) < len(RUNS)
# What says which runs there are and what each is: the figures and tables that compare runs.
# In the config's order, which fixes each run's colour.
RUNS_CONFIG = json.dumps(
    {key: config[key] for key in ("base", "ablations", "runs", "data")}
)


wildcard_constraints:
    run="|".join(re.escape(name) for name in RUNS),
    first=r"\d+",
    last=r"\d+",
    loop="|".join(LOOP_SCHEDULES),
    factor="|".join(re.escape(factor) for factor in ABLATION_LEVELS) or "(?!)",


def results_path(relative):
    """A path under the results directory (`results` by default, `--config results=DIR`)."""
    return str(Path(config["results"]) / relative)


# The results exported where researchers look (config `export`): TensorBoard, MLflow.
EXPORT = config["export"]
EXPORT_OUTPUTS = [
    *([results_path("tensorboard")] if EXPORT["tensorboard"] else []),
    *([results_path("mlflow.json")] if EXPORT["mlflow"] else []),
]


def exported_files(wildcards):
    """What the exporters read: every run's tables and figures, and the closed loop's runs."""
    return [
        *expand(results_path("runs/{run}/{table}"), run=RUNS, table=RUN_TABLES),
        *expand(results_path("runs/{run}/{table}"), run=RUNS, table=ANALYSIS_TABLES),
        *expand(
            results_path("figures/{run}/{figure}.{format}"),
            run=RUNS,
            figure=RUN_FIGURES,
            format=FIGURE_FORMAT,
        ),
        *expand(results_path("runs/{run}/dense.parquet"), run=RUNS if DENSE else []),
        *expand(results_path("runs/{run}/closed_loop.csv"), run=RETRAINED),
    ]


def run_config_json(wildcards):
    """Every training setting of one run: the train rule's only params, so any change retrains."""
    return json.dumps(RUNS[wildcards.run], sort_keys=True)


def factory_sources(wildcards):
    """The source files of the factories a run names (model, task) that lie in the working
    directory or PYTHONPATH: inputs of training, so that editing one retrains (and changes the
    between-workflow cache key)."""
    found = (
        module_file(factory) for factory in factories(RUNS[wildcards.run]).values()
    )
    return sorted({str(path) for path in found if path is not None})


# Runs whose trajectory is imported (config trajectory_from), not trained: rule import.
IMPORTED = {
    name: run["trajectory_from"]
    for name, run in RUNS.items()
    if "trajectory_from" in run
}
IMPORTED_PATTERN = "|".join(re.escape(name) for name in IMPORTED) or "(?!)"
TRAINED_PATTERN = (
    "|".join(re.escape(name) for name in RUNS if name not in IMPORTED) or "(?!)"
)


def import_sources(wildcards):
    """The recorded trajectory, or each checkpoint file or folder, of an imported run, sorted:
    the order in which a list of `steps` is given."""
    source = IMPORTED[wildcards.run]
    if "trajectory" in source:
        return [source["trajectory"]]
    patterns = source["checkpoints"]
    patterns = [patterns] if isinstance(patterns, str) else patterns
    found = (
        sorted(glob.glob(pattern)) if glob.has_magic(pattern) else [pattern]
        for pattern in patterns
    )
    return sorted({path for paths in found for path in paths})


def import_steps(wildcards):
    """`--steps` of nwt import: from_name, or the step of each checkpoint."""
    steps = IMPORTED[wildcards.run].get("steps", "from_name")
    return steps if isinstance(steps, str) else " ".join(str(step) for step in steps)


def trust_options(wildcards):
    """`--trust` for each factory the run names: the stages that rebuild its model from the
    trajectory import only the factories the workflow config names."""
    return " ".join(
        f"--trust {factory}" for factory in factories(RUNS[wildcards.run]).values()
    )


def sibling_trajectory(wildcards):
    """The seed sibling's trajectory, an input of the stages that measure gradients ([] if none)."""
    sibling = SEED_SIBLINGS.get(wildcards.run)
    return results_path(f"runs/{sibling}/trajectory.h5") if sibling else []


def sibling_option(wildcards, input):
    """`--other-final` for the seed sibling's trajectory, where the run has one."""
    return f"--other-final {shlex.quote(input.sibling)}" if input.sibling else ""


def loop_schedule_file(wildcards):
    """The lr file (schedule stage output) that run {run}--{loop} trains on."""
    return results_path(f"runs/{wildcards.run}/{LOOP_SCHEDULES[wildcards.loop]}")


def loop_run_config_json(wildcards):
    """{run}'s settings but its learning rates, which come from the loop's schedule file."""
    run = {
        **RUNS[wildcards.run],
        "schedule": "file",
        "schedule_file": loop_schedule_file(wildcards),
    }
    return json.dumps(run, sort_keys=True)


# A training job's thread count is a param of training (params.threads): on a CPU it changes the
# last bits, so the rerun trigger and the between-workflow cache key (which hashes params) must
# see it.


def stage_threads(stage):
    """Threads of a stage's jobs, from config `resources`: also torch's thread count inside."""
    return config["resources"][stage]["threads"]


def stage_resources(stage):
    """What a stage's jobs ask for, from config `resources`, under the names Snakemake and the
    Slurm executor read: mem_mb (--mem), runtime in minutes (--time), gpu and gpu_model (--gpus).
    An unset gpu_model (None) leaves the resource out, so any GPU model will do. A training job
    of train.processes DDP processes asks for that many times the GPUs."""
    settings = config["resources"][stage]
    asked = {key: settings[key] for key in ("mem_mb", "runtime", "gpu", "gpu_model")}
    if stage == "train":
        asked["gpu"] *= TRAIN_PROCESSES
    return asked


TRAIN_PROCESSES = config["train"]["processes"]
# `nwt` itself for one process; torchrun for several, each process one shard of each minibatch.
# (The `--` ends torchrun's options, which would take `--run` for its own `--run-path`.)
TRAIN_LAUNCHER = (
    "nwt"
    if TRAIN_PROCESSES == 1
    else f"torchrun --standalone --nnodes 1 --nproc-per-node {TRAIN_PROCESSES} -m nowrongturns --"
)
# Loader workers change no bit of any output: in the shell commands, not in params, so that a
# new count reruns nothing.
TRAIN_WORKERS = f"--data-workers {config['train']['data_workers']}"
MEASURE_WORKERS = f"--data-workers {config['measure']['data_workers']}"


def train_threads():
    """Threads of a training job: each of its processes runs resources.train.threads."""
    return stage_threads("train") * TRAIN_PROCESSES


def measure_flag(key):
    """`--full-batch` or `--no-full-batch`, as config `measure` says, for a switch of nwt measure."""
    option = key.replace("_", "-")
    return f"--{option}" if config["measure"][key] else f"--no-{option}"


MEASURE_JOB_CHECKPOINTS = config["measure"]["job_checkpoints"]
# One measure job per run, or one per `job_checkpoints` measured checkpoints, gathered.
MEASURE_PART = "{run}/{first}-{last}" if MEASURE_JOB_CHECKPOINTS else "{run}"
MEASURE_OUTPUT = (
    "runs/{run}/measure/{first}-{last}.parquet"
    if MEASURE_JOB_CHECKPOINTS
    else "runs/{run}/geometry.parquet"
)
MEASURE_LAYERS_OUTPUT = (
    "runs/{run}/measure/{first}-{last}.layers.parquet"
    if MEASURE_JOB_CHECKPOINTS
    else "runs/{run}/layers.parquet"
)


def measure_jobs_file(wildcards):
    """The measure jobs' plan a part job belongs to (none with one job per run)."""
    if not MEASURE_JOB_CHECKPOINTS:
        return []
    return results_path(f"runs/{wildcards.run}/measure/jobs.json")


def measure_checkpoints_option(wildcards):
    if not MEASURE_JOB_CHECKPOINTS:
        return ""
    return f"--checkpoints {wildcards.first} {wildcards.last}"


def measured_parts(wildcards, suffix=".parquet"):
    """Every measure job's table of a run, once `measure_jobs` has cut its checkpoints."""
    with open(checkpoints.measure_jobs.get(run=wildcards.run).output[0]) as handle:
        jobs = json.load(handle)["jobs"]
    return [
        results_path(f"runs/{wildcards.run}/measure/{first}-{last}{suffix}")
        for first, last in jobs
    ]


def measured_layer_parts(wildcards):
    """Every measure job's layers table of a run."""
    return measured_parts(wildcards, ".layers.parquet")


def layers_option(wildcards, output):
    """`--layers` and the layers table a measure job writes, where measure.layers is on."""
    return f"--layers {shlex.quote(output.layers)}" if LAYERS else ""


def replayed_segments(wildcards):
    """Every replay job's table of a run, once `segments` has cut the run's segments into jobs."""
    with open(checkpoints.segments.get(run=wildcards.run).output[0]) as handle:
        jobs = json.load(handle)["jobs"]
    return [
        results_path(f"runs/{wildcards.run}/dense/{first}-{last}.parquet")
        for first, last in jobs
    ]


def analysis_options(name):
    """An analysis' settings as `nwt <analysis>` options: `--points 11 --examples 128`."""
    options = []
    for key, value in sorted(ANALYSES[name].items()):
        values = value if isinstance(value, list) else [value]
        options.append(f"--{key.replace('_', '-')} " + " ".join(str(v) for v in values))
    return " ".join(options)


def run_figure_outputs():
    """Each figure of a run, marked for the report with its caption, category and labels."""
    outputs = []
    for name, category in RUN_FIGURES.items():
        figure = results_path(f"figures/{{run}}/{name}.{FIGURE_FORMAT}")
        labels = {"run": "{run}", "figure": name}
        caption = f"../report/{name}.rst"
        outputs.append(
            report_flag(figure, caption, category, subcategory="{run}", labels=labels)
        )
    return outputs


def geometry_tables(runs):
    return [results_path(f"runs/{run}/geometry.parquet") for run in runs]


def ablation_geometry(wildcards):
    """The geometry table of every run at a level of the factor."""
    return geometry_tables(
        run for _, runs in ABLATION_LEVELS[wildcards.factor] for run in runs
    )
