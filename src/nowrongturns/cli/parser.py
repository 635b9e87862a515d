"""The argument parser of `nwt`: one subcommand per stage, each calling its cmd_* of commands.py."""

from __future__ import annotations

import argparse

from nowrongturns.cli import commands
from nowrongturns.cli.versions import versions
from nowrongturns.precision import PRECISIONS
from nowrongturns.schedule.fit import FAMILIES


def boolean(text: str) -> bool:
    """True or False, as the workflow writes a config's booleans."""
    if text not in ("True", "False"):
        raise argparse.ArgumentTypeError(f"{text!r} is neither True nor False")
    return text == "True"


def chunk_size(text: str) -> str | int:
    """'batch', or a positive number of examples."""
    if text == "batch":
        return text
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is neither 'batch' nor a positive integer")
    return int(text)


def _compute_options(stage: argparse.ArgumentParser, precision: str | None = None) -> None:
    """Where a stage that runs the model computes, and how its data are loaded."""
    stage.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    stage.add_argument("--threads", type=int, help="torch CPU threads")
    stage.add_argument(
        "--data-workers", type=int, default=0, help="loader processes for data on disk (0: none)"
    )
    if precision:
        stage.add_argument("--precision", default="fp32", choices=PRECISIONS, help=precision)


def _trust_option(stage: argparse.ArgumentParser) -> None:
    """A stage that rebuilds the model a trajectory's config names."""
    stage.add_argument(
        "--trust",
        action="append",
        default=[],
        metavar="MODULE:FUNCTION",
        help="a factory the trajectory's config names that this command may import (repeatable;"
        " a trajectory naming any other is refused, nothing imported)",
    )


def _other_final_option(stage: argparse.ArgumentParser) -> None:
    """A stage that measures gradients: the control gamma_other's final point."""
    stage.add_argument(
        "--other-final",
        metavar="TRAJECTORY",
        help="the trajectory of the run differing only in its seed: gamma_other against its "
        "final point (default: none, gamma_other NaN)",
    )


CONFIG_HELP = (
    "the workflow config with its defaults filled, as the workflow passes it: inline JSON, or a "
    "YAML/JSON file"
)


def _figure_format(stage: argparse.ArgumentParser) -> None:
    stage.add_argument("--format", default="png", choices=["png", "pdf", "svg"])


def _comparison_options(stage: argparse.ArgumentParser) -> None:
    """A figure of several runs: which runs there are (the config), and where it goes."""
    stage.add_argument("--config", required=True, help=CONFIG_HELP)
    stage.add_argument("--out", required=True, help="the figure to write")
    _figure_format(stage)


def _job_plan(stages, name: str, help: str, option: str, option_help: str, out: str, func) -> None:
    """A stage that reads a trajectory's length and plans the jobs of a later stage (JSON)."""
    stage = stages.add_parser(name, help=help)
    stage.add_argument("trajectory")
    stage.add_argument(option, type=int, required=True, help=option_help)
    stage.add_argument("--out", required=True, help=f"{out} to write")
    stage.set_defaults(func=func)


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="nwt", description=commands.__doc__.split("\n")[0])
    top.add_argument("--version", action="version", version=f"nwt: {versions()}")
    stages = top.add_subparsers(dest="stage", required=True)

    train = stages.add_parser("train", help="train one run and record its trajectory (HDF5)")
    train.add_argument(
        "--run",
        required=True,
        help="the run config: inline JSON, or a YAML/JSON file with every run key",
    )
    train.add_argument("--out", required=True, help="trajectory.h5 to write")
    train.add_argument("--run-name", help="default: the name of the output's directory")
    _compute_options(train, "of the training compute (recorded in the trajectory)")
    train.set_defaults(func=commands.cmd_train)

    imports = stages.add_parser(
        "import",
        help="a trajectory from a finished training's checkpoints, or from a recording",
        description="Checkpoints (.pt/.pth/.bin loaded with torch.load(weights_only=True), "
        ".safetensors, Lightning .ckpt, Hugging Face checkpoint-N/ folders), or one recorded "
        "trajectory .h5 (nowrongturns.Recorder), into a trajectory the later stages read.",
    )
    imports.add_argument("sources", nargs="+", help="checkpoint files, folders or globs")
    imports.add_argument(
        "--run",
        required=True,
        help="the run config (inline JSON, or a YAML/JSON file): its model factory builds the "
        "model the checkpoints are loaded into",
    )
    imports.add_argument("--out", required=True, help="trajectory.h5 to write")
    imports.add_argument(
        "--steps",
        nargs="+",
        default=["from_name"],
        help="from_name (step=N, step_N, checkpoint-N, else the last number of each name), or "
        "the step of each checkpoint, in the order of the sources as sorted",
    )
    imports.set_defaults(func=commands.cmd_import)

    measure = stages.add_parser("measure", help="RSI, EB and gamma along a trajectory (Parquet)")
    measure.add_argument("trajectory")
    measure.add_argument("--out", required=True, help="geometry.parquet to write")
    measure.add_argument(
        "--layers", help="layers.parquet to write: gamma per parameter tensor (default: none)"
    )
    measure.add_argument("--run-name", help="default: the name of the trajectory's directory")
    measure.add_argument("--samples", type=int, default=8, help="fresh minibatches per checkpoint")
    measure.add_argument("--full-batch", action=argparse.BooleanOptionalAction, default=True)
    measure.add_argument("--random-labels", action=argparse.BooleanOptionalAction, default=True)
    measure.add_argument(
        "--update",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="the optimizer's own step direction, replayed from its stored state",
    )
    measure.add_argument(
        "--full-batch-every",
        type=int,
        default=1,
        help="the full batch at every N-th measured checkpoint (and the first and last)",
    )
    measure.add_argument(
        "--fixed-batches",
        type=int,
        default=0,
        help="minibatches drawn once per run and measured at every checkpoint (source fixed)",
    )
    measure.add_argument(
        "--full-batch-chunk",
        type=chunk_size,
        default="batch",
        help="examples per chunk of the full pass, or 'batch': one shard of a minibatch each",
    )
    measure.add_argument(
        "--require",
        action="append",
        default=[],
        choices=("train_batch", "random_labels", "update"),
        help="a source that must be measured: a trajectory that cannot give it (recorded without "
        "minibatch indices or optimizer state, imported) stops, naming what is missing; "
        "otherwise each is measured where the trajectory allows (repeatable)",
    )
    measure.add_argument(
        "--checkpoints",
        type=int,
        nargs=2,
        metavar=("FIRST", "LAST"),
        help="measure only measured checkpoints FIRST to LAST (one job of several)",
    )
    _compute_options(measure, "of the measured gradients (fp32: strict, no TF32)")
    _trust_option(measure)
    _other_final_option(measure)
    measure.set_defaults(func=commands.cmd_measure)

    endpoints = stages.add_parser(
        "endpoints", help="the same path measured against other endpoints than w_T (Parquet)"
    )
    endpoints.add_argument("trajectory")
    endpoints.add_argument("--out", required=True, help="endpoints.parquet to write")
    endpoints.add_argument("--run-name", help="default: the name of the trajectory's directory")
    endpoints.add_argument(
        "--progress",
        type=float,
        nargs="*",
        default=[],
        help="earlier checkpoints as w*: the last at or before each fraction of training",
    )
    endpoints.add_argument(
        "--continue",
        dest="continued",
        type=float,
        default=0.0,
        help="the end of training on from w_T at its last lr for this share of its steps",
    )
    endpoints.add_argument(
        "--samples", type=int, default=8, help="fresh minibatches per checkpoint"
    )
    _compute_options(endpoints, "of the measured gradients (fp32: strict, no TF32)")
    _trust_option(endpoints)
    endpoints.set_defaults(func=commands.cmd_endpoints)

    _job_plan(
        stages,
        "measure-jobs",
        "the measured checkpoints of a trajectory, cut into measure jobs",
        "--job-checkpoints",
        "at most this many checkpoints a job",
        "jobs.json",
        commands.cmd_measure_jobs,
    )

    gather_geometry = stages.add_parser(
        "gather-geometry", help="one geometry table of every measure job's"
    )
    gather_geometry.add_argument("parts", nargs="+")
    gather_geometry.add_argument("--out", required=True, help="geometry.parquet to write")
    gather_geometry.set_defaults(func=commands.cmd_gather_geometry)

    plan = stages.add_parser(
        "plan", help="per run and stage, the minibatch passes and checkpoint disk a config implies"
    )
    plan.add_argument(
        "configs", nargs="+", help="workflow configs (YAML), such as the presets configs/*.yaml"
    )
    plan.add_argument(
        "--schema",
        default="workflow/schemas/config.schema.yaml",
        help="the config schema (default: as seen from the workflow's directory)",
    )
    plan.set_defaults(func=commands.cmd_plan)

    _job_plan(
        stages,
        "segments",
        "dense mode: the segments of a trajectory, cut into replay jobs",
        "--job-steps",
        "the least training steps a replay job holds",
        "segments.json",
        commands.cmd_segments,
    )

    replay = stages.add_parser(
        "replay", help="dense mode: per-step geometry of consecutive segments between checkpoints"
    )
    replay.add_argument("trajectory")
    replay.add_argument(
        "--segments",
        type=int,
        nargs=2,
        required=True,
        metavar=("FIRST", "LAST"),
        help="from checkpoint FIRST to checkpoint LAST + 1 (segment k: checkpoint k to k + 1)",
    )
    replay.add_argument("--out", required=True, help="the segments' parquet to write")
    replay.add_argument("--run-name", help="default: the name of the trajectory's directory")
    _compute_options(replay)
    _trust_option(replay)
    _other_final_option(replay)
    replay.set_defaults(func=commands.cmd_replay)

    gather = stages.add_parser("gather-dense", help="dense mode: one table of all segments")
    gather.add_argument("parts", nargs="+")
    gather.add_argument("--out", required=True, help="dense.parquet to write")
    gather.set_defaults(func=commands.cmd_gather_dense)

    schedule = stages.add_parser(
        "schedule", help="the locally optimal step size eta*, its fitted schedule, the bound"
    )
    schedule.add_argument("geometry")
    schedule.add_argument("trajectory", help="for the learning rate used")
    schedule.add_argument("--csv", required=True, help="schedule.csv to write")
    schedule.add_argument("--json", required=True, help="schedule.json to write")
    schedule.add_argument("--bound", required=True, help="bound.csv to write")
    schedule.add_argument("--cosine", required=True, help="the cosine baseline's lr file to write")
    schedule.add_argument("--dense", help="dense.parquet, for a bound measured at every step")
    schedule.add_argument(
        "--smooth", type=int, default=9, help="running-median window (checkpoints)"
    )
    schedule.add_argument("--fit", default="auto", choices=["auto", *FAMILIES])
    schedule.add_argument(
        "--peak", default="fitted", choices=["fitted", "base"], help="the derived schedule's peak"
    )
    schedule.add_argument(
        "--ignore-last", type=float, default=0.05, help="fraction of training left out of the fit"
    )
    schedule.set_defaults(func=commands.cmd_schedule)

    closed_loop = stages.add_parser(
        "closed-loop", help="a run against its retrainings on the derived and cosine schedules"
    )
    closed_loop.add_argument("trajectories", nargs="+", help="runs/{name}/trajectory.h5 each")
    closed_loop.add_argument("--summary", required=True, help="closed_loop.csv to write")
    closed_loop.add_argument("--curves", required=True, help="closed_loop_curves.csv to write")
    closed_loop.set_defaults(func=commands.cmd_closed_loop)

    figures = stages.add_parser("figures", help="the figures of one run")
    figures.add_argument(
        "names",
        nargs="+",
        help="of figures.RUN_FIGURES: geometry, schedule, bound, dense, closed_loop; of the"
        " analyses' ANALYSIS_FIGURES: interpolation, sharpness, plane, orthogonal",
    )
    figures.add_argument("--run-dir", required=True, help="the run's tables: runs/{run}")
    figures.add_argument("--out-dir", required=True, help="receives {name}.{format}")
    _figure_format(figures)
    figures.set_defaults(func=commands.cmd_figures)

    ablation = stages.add_parser("ablation-figure", help="one line per level of an ablation factor")
    ablation.add_argument("factor", help="a key of the config's `ablations`")
    ablation.add_argument("geometry", nargs="+", help="geometry.parquet of each run of the factor")
    _comparison_options(ablation)
    ablation.set_defaults(func=commands.cmd_ablation_figure)

    contrast = stages.add_parser(
        "contrast-figure", help="gamma of the networks beside the synthetic objectives"
    )
    contrast.add_argument("geometry", nargs="+", help="geometry.parquet of every run")
    _comparison_options(contrast)
    contrast.set_defaults(func=commands.cmd_contrast_figure)

    claims = stages.add_parser("claims", help="the paper's claims checked on every run")
    claims.add_argument("--config", required=True, help=CONFIG_HELP)
    claims.add_argument("--geometry", nargs="+", required=True, help="every run's geometry.parquet")
    claims.add_argument("--schedules", nargs="*", default=[], help="every run's schedule.json")
    claims.add_argument(
        "--interpolation",
        nargs="*",
        default=[],
        help="every run's interpolation.parquet, where that analysis is on",
    )
    claims.add_argument("--csv", required=True, help="claims.csv to write")
    claims.add_argument("--html", required=True, help="claims.html to write")
    claims.set_defaults(func=commands.cmd_claims)
    analyses(stages)
    exports(stages)
    return top


def exports(stages) -> None:
    """`nwt export tensorboard|mlflow`: the results beside a researcher's own runs."""
    export = stages.add_parser(
        "export", help="the results into TensorBoard or MLflow (optional extras)"
    )
    trackers = export.add_subparsers(dest="tracker", required=True)
    tensorboard = trackers.add_parser(
        "tensorboard",
        help="per run, the geometry along training and the figures, as TensorBoard events",
    )
    tensorboard.add_argument("results", help="the results directory")
    tensorboard.add_argument(
        "--logdir", required=True, help="receives one folder per run (tensorboard --logdir DIR)"
    )
    tensorboard.set_defaults(func=commands.cmd_export_tensorboard)
    mlflow = trackers.add_parser(
        "mlflow", help="one MLflow run per run: config, geometry along training, tables, figures"
    )
    mlflow.add_argument("results", help="the results directory")
    mlflow.add_argument(
        "--tracking-uri", required=True, help="the MLflow server (http://...) or store"
    )
    mlflow.add_argument("--experiment", required=True, help="the MLflow experiment, made if new")
    mlflow.add_argument(
        "--record", help="a JSON file to write: run name -> MLflow run id (the workflow's output)"
    )
    mlflow.set_defaults(func=commands.cmd_export_mlflow)


def _analysis(stages, name: str, help: str, out: str) -> argparse.ArgumentParser:
    """A stage of analyses/: a trajectory in, one table out, the model rebuilt."""
    stage = stages.add_parser(name, help=help)
    stage.add_argument("trajectory")
    stage.add_argument("--out", required=True, help=f"{out} to write")
    stage.add_argument("--run-name", help="default: the name of the trajectory's directory")
    _compute_options(stage)
    _trust_option(stage)
    stage.set_defaults(func=getattr(commands, f"cmd_{name}"))
    return stage


def _examples_option(stage: argparse.ArgumentParser, what: str, default: int = 512) -> None:
    stage.add_argument(
        "--examples",
        type=int,
        default=default,
        help=f"training examples of the {what}, drawn once per run (all where the task has fewer)",
    )


def analyses(stages) -> None:
    """The analyses along the path (analyses/, config `analyses`)."""
    interpolation = _analysis(
        stages,
        "interpolation",
        "the loss on the straight segment from each checkpoint to w*",
        "interpolation.parquet",
    )
    interpolation.add_argument(
        "--points", type=int, default=11, help="values of alpha, 0 to 1 inclusive (at least 11)"
    )
    _examples_option(interpolation, "evaluation set", 128)
    interpolation.add_argument(
        "--refine",
        type=boolean,
        default=True,
        help="True: bisect where the loss rises, down to --resolution (False: the grid alone)",
    )
    interpolation.add_argument(
        "--resolution", type=float, default=0.01, help="the narrowest interval of alpha bisected"
    )

    sharpness = _analysis(
        stages,
        "sharpness",
        "the top Hessian eigenvalue at each checkpoint, beside the optimizer's threshold",
        "sharpness.parquet",
    )
    _examples_option(sharpness, "chunk whose loss' Hessian is taken")
    sharpness.add_argument(
        "--iterations", type=int, default=20, help="at most this many Lanczos iterations"
    )
    sharpness.add_argument(
        "--tolerance",
        type=float,
        default=1e-4,
        help="stop once the Ritz residual is below tolerance * lambda_max",
    )
    sharpness.add_argument(
        "--batches",
        type=int,
        default=4,
        help="sampled training minibatches whose curvature along their gradient is averaged",
    )

    plane = _analysis(
        stages,
        "plane",
        "the checkpoints on their top two principal directions, the loss there",
        "plane.parquet",
    )
    plane.add_argument("--grid", type=int, default=21, help="points per side of the loss grid")
    _examples_option(plane, "evaluation set")
    plane.add_argument(
        "--margin",
        type=float,
        default=0.25,
        help="the grid spans the projections and this fraction of their range on each side",
    )

    orthogonal = _analysis(
        stages,
        "orthogonal",
        "replayed steps: cosines of the gradients' parts orthogonal to w - w*, k steps apart",
        "orthogonal.parquet",
    )
    orthogonal.add_argument(
        "--lags", type=int, nargs="+", default=[1, 2, 5, 10, 20, 50], help="the lags k (steps)"
    )
