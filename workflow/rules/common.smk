import json
import re
from pathlib import Path

from nowrongturns.config import ConfigError, expand_runs, validate_config

SCHEMA = Path(workflow.current_basedir) / "../schemas/config.schema.yaml"
try:
    validated = validate_config(config, SCHEMA)
except ConfigError as error:
    raise WorkflowError(f"{error}\n(schema: {SCHEMA.resolve()})") from None
config.clear()
config.update(validated)

RUNS = expand_runs(config)
RUN_TABLES = [
    "trajectory.h5",
    "geometry.parquet",
    "schedule.csv",
    "schedule.json",
    "bound.csv",
]
DENSE = config["measure"]["dense"]
FIGURE_FORMAT = config["figures"]["format"]
RUN_FIGURES = [f"{name}.{FIGURE_FORMAT}" for name in ("geometry", "schedule", "bound")]
# The closed loop: the base run retrained on each of these schedules (config schedule.retrain).
LOOP_SCHEDULES = {"derived": "schedule.json", "cosine": "cosine.json"}
RETRAINED = ["base"] if config["schedule"]["retrain"] else []


wildcard_constraints:
    run="|".join(re.escape(name) for name in RUNS),
    segment=r"\d+",
    loop="|".join(LOOP_SCHEDULES),


def results_path(relative):
    """A path under the results directory (`results` by default, `--config results=DIR`)."""
    return str(Path(config["results"]) / relative)


def run_config_json(wildcards):
    """Every training setting of one run: the train rule's only params, so any change retrains."""
    return json.dumps(RUNS[wildcards.run], sort_keys=True)


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


# A job's thread count, as a param of training: on a CPU it changes the last bits, so the rerun
# trigger and the between-workflow cache key (which hashes params) must see it.
def job_threads(wildcards, threads):
    return threads


def stage_threads(stage):
    """Threads of a stage's jobs, from config `resources`: also torch's thread count inside."""
    return config["resources"][stage]["threads"]


def stage_resources(stage):
    """What a stage's jobs ask for, from config `resources`, under the names Snakemake and the
    Slurm executor read: mem_mb (--mem), runtime in minutes (--time), gpu and gpu_model (--gpus).
    An unset gpu_model (None) leaves the resource out, so any GPU model will do."""
    settings = config["resources"][stage]
    return {key: settings[key] for key in ("mem_mb", "runtime", "gpu", "gpu_model")}


def measure_flag(key):
    """`--full-batch` or `--no-full-batch`, as config `measure` says, for a switch of nwt measure."""
    option = key.replace("_", "-")
    return f"--{option}" if config["measure"][key] else f"--no-{option}"


def replayed_segments(wildcards):
    """Every segment's replay of a run, once `segments` has read how many there are."""
    with open(checkpoints.segments.get(run=wildcards.run).output[0]) as handle:
        count = len(json.load(handle)["segments"])
    return [
        results_path(f"runs/{wildcards.run}/dense/{k}.parquet") for k in range(count)
    ]
