"""`nwt <stage>`: each workflow stage as a command that works on files, without Snakemake.

    nwt train --run config/run.yaml --out results/runs/base/trajectory.h5
    nwt measure results/runs/base/trajectory.h5 --out results/runs/base/geometry.parquet
    nwt schedule results/runs/base/geometry.parquet results/runs/base/trajectory.h5 \
        --csv results/runs/base/schedule.csv --json results/runs/base/schedule.json \
        --bound results/runs/base/bound.csv --cosine results/runs/base/cosine.json
    nwt closed-loop results/runs/{base,base--derived,base--cosine}/trajectory.h5 \
        --summary results/runs/base/closed_loop.csv \
        --curves results/runs/base/closed_loop_curves.csv
    nwt figures --run-dir results/runs/base --out-dir results/figures/base geometry schedule bound
    nwt replay results/runs/base/trajectory.h5 --segments 0 28 \
        --out results/runs/base/dense/0-28.parquet
    nwt plan configs/paper-*.yaml
    nwt ablation-figure batch_size --config config.json --out figures/ablations/batch_size.png \
        results/runs/*/geometry.parquet
    nwt claims --config config.json --csv claims.csv --html claims.html \
        --geometry results/runs/*/geometry.parquet --schedules results/runs/*/schedule.json
"""

from __future__ import annotations

import argparse
import os
import resource
import signal
import sys
import time
from pathlib import Path

from .precision import PRECISIONS
from .schedule_fit import FAMILIES


def _set_threads(threads: int | None) -> None:
    import torch

    if threads:
        torch.set_num_threads(threads)


def cmd_train(args) -> None:
    started = time.perf_counter()
    # SIGTERM (scancel, torchrun stopping the other ranks when one dies) as an exception, so
    # that the partial trajectory is closed whole and resumes.
    signal.signal(signal.SIGTERM, lambda number, frame: sys.exit(128 + number))
    import torch

    from .config import load_config
    from .train import train
    from .trajectory import DiskFullError

    _set_threads(args.threads)
    run_name = args.run_name or Path(args.out).parent.name
    try:
        train(load_config(args.run), args.out, device=args.device, run_name=run_name,
              data_workers=args.data_workers, precision=args.precision)  # fmt: skip
    except DiskFullError as error:
        if not error.torn:
            raise
        # HDF5 cannot close a file whose flush failed, and h5py crashes trying to at exit; each
        # try could tear more. Leave at once: the rerun cuts the torn tail.
        print(f"nwt train: error: {error}", file=sys.stderr, flush=True)
        os._exit(1)
    # What the job cost, for sizing config `resources`: the train rule has no benchmark file
    # (Snakemake allows none beside its between-workflow cache).
    cost = f"{time.perf_counter() - started:.1f} s wall, peak memory {_peak_rss_mb():.0f} MB"
    if torch.cuda.is_initialized():
        cost += f", peak GPU memory {torch.cuda.max_memory_allocated() / 2**20:.0f} MB"
    rank = os.environ.get("RANK")  # under torchrun, each process's own
    print(f"{run_name}{f' (rank {rank})' if rank else ''}: {cost}", file=sys.stderr)


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def cmd_measure(args) -> None:
    from .geometry import measure

    _set_threads(args.threads)
    measure(
        args.trajectory,
        args.out,
        run_name=args.run_name or Path(args.trajectory).parent.name,
        samples=args.samples,
        full_batch=args.full_batch,
        random_labels=args.random_labels,
        update=args.update,
        device=args.device,
        data_workers=args.data_workers,
        precision=args.precision,
        checkpoints=args.checkpoints,
        full_batch_every=args.full_batch_every,
        fixed_batches=args.fixed_batches,
        full_batch_chunk=args.full_batch_chunk,
        trusted=args.trust,
        other_final=args.other_final,
    )


def cmd_measure_jobs(args) -> None:
    from .geometry import measure_jobs

    measure_jobs(args.trajectory, args.out, args.job_checkpoints)


def cmd_gather_geometry(args) -> None:
    from .geometry import gather

    gather(args.parts, args.out)


def cmd_plan(args) -> None:
    from .plan import print_plan

    for config in args.configs:
        print_plan(config, args.schema)


def cmd_segments(args) -> None:
    from .dense import write_segments

    write_segments(args.trajectory, args.out, args.job_steps)


def cmd_replay(args) -> None:
    from .dense import replay_segments

    _set_threads(args.threads)
    run_name = args.run_name or Path(args.trajectory).parent.name
    first, last = args.segments
    replay_segments(args.trajectory, first, last, args.out, run_name, device=args.device,
                    data_workers=args.data_workers, trusted=args.trust,
                    other_final=args.other_final)  # fmt: skip


def cmd_gather_dense(args) -> None:
    from .dense import gather

    gather(args.parts, args.out)


def cmd_schedule(args) -> None:
    from .schedule import derive_schedule

    derive_schedule(
        args.geometry,
        args.trajectory,
        args.csv,
        args.json,
        args.bound,
        args.cosine,
        smooth=args.smooth,
        fit=args.fit,
        peak=args.peak,
        ignore_last=args.ignore_last,
        dense=args.dense,
    )


def cmd_closed_loop(args) -> None:
    from .closed_loop import compare

    compare(args.trajectories, args.summary, args.curves)


def cmd_figures(args) -> None:
    from .figures import draw_run_figures

    draw_run_figures(args.run_dir, args.out_dir, args.names, fmt=args.format)


def _geometry_tables(paths: list[str]) -> dict:
    """Run name (from its `run` column) -> geometry table."""
    import pandas as pd

    tables = {}
    for path in paths:
        table = pd.read_parquet(path)
        if table.empty:
            raise ValueError(f"{path}: the geometry table has no rows")
        tables[str(table["run"].iloc[0])] = table
    return tables


def cmd_ablation_figure(args) -> None:
    from .comparisons import ablation_figure
    from .config import load_config
    from .figures import save_figure

    config = load_config(args.config, "workflow config")
    if args.factor not in config["ablations"]:
        raise ValueError(f"{args.factor!r} is not a factor of `ablations` in the config")
    figure = ablation_figure(_geometry_tables(args.geometry), config, args.factor)
    save_figure(figure, args.out, args.format)


def cmd_contrast_figure(args) -> None:
    from .comparisons import contrast_figure
    from .config import load_config
    from .figures import save_figure

    config = load_config(args.config, "workflow config")
    save_figure(contrast_figure(_geometry_tables(args.geometry), config), args.out, args.format)


def cmd_claims(args) -> None:
    from .claims import write_claims
    from .config import load_config

    config = load_config(args.config, "workflow config")
    write_claims(_geometry_tables(args.geometry), args.schedules, config, args.csv, args.html)


def _compute_options(stage: argparse.ArgumentParser, precision: str | None = None) -> None:
    """Where a stage that runs the model computes, and how its data are loaded."""
    stage.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    stage.add_argument("--threads", type=int, help="torch CPU threads")
    stage.add_argument(
        "--data-workers", type=int, default=0, help="loader processes for data on disk (0: none)"
    )
    if precision:
        stage.add_argument("--precision", default="fp32", choices=PRECISIONS, help=precision)


def _gradient_options(stage: argparse.ArgumentParser) -> None:
    """A stage that rebuilds the model a trajectory's config names and measures its gradients."""
    stage.add_argument(
        "--trust", action="append", default=[], metavar="MODULE:FUNCTION",
        help="a factory the trajectory's config names that this command may import (repeatable;"
        " a trajectory naming any other is refused, nothing imported)",
    )
    stage.add_argument(
        "--other-final", metavar="TRAJECTORY",
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


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="nwt", description=__doc__.split("\n")[0])
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
    train.set_defaults(func=cmd_train)

    measure = stages.add_parser("measure", help="RSI, EB and gamma along a trajectory (Parquet)")
    measure.add_argument("trajectory")
    measure.add_argument("--out", required=True, help="geometry.parquet to write")
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
        "--full-batch-every", type=int, default=1,
        help="the full batch at every N-th measured checkpoint (and the first and last)",
    )
    measure.add_argument(
        "--fixed-batches", type=int, default=0,
        help="minibatches drawn once per run and measured at every checkpoint (source fixed)",
    )
    measure.add_argument(
        "--full-batch-chunk", type=int, default=4096, help="examples per chunk of the full pass"
    )
    measure.add_argument(
        "--checkpoints", type=int, nargs=2, metavar=("FIRST", "LAST"),
        help="measure only measured checkpoints FIRST to LAST (one job of several)",
    )
    _compute_options(measure, "of the measured gradients (fp32: strict, no TF32)")
    _gradient_options(measure)
    measure.set_defaults(func=cmd_measure)

    jobs = stages.add_parser(
        "measure-jobs", help="the measured checkpoints of a trajectory, cut into measure jobs"
    )
    jobs.add_argument("trajectory")
    jobs.add_argument(
        "--job-checkpoints", type=int, required=True, help="at most this many checkpoints a job"
    )
    jobs.add_argument("--out", required=True, help="jobs.json to write")
    jobs.set_defaults(func=cmd_measure_jobs)

    gather_geometry = stages.add_parser(
        "gather-geometry", help="one geometry table of every measure job's"
    )
    gather_geometry.add_argument("parts", nargs="+")
    gather_geometry.add_argument("--out", required=True, help="geometry.parquet to write")
    gather_geometry.set_defaults(func=cmd_gather_geometry)

    plan = stages.add_parser(
        "plan", help="per run and stage, the minibatch passes and checkpoint disk a config implies"
    )
    plan.add_argument(
        "configs", nargs="+", help="workflow configs (YAML), such as the presets configs/*.yaml"
    )
    plan.add_argument(
        "--schema", default="workflow/schemas/config.schema.yaml",
        help="the config schema (default: as seen from the workflow's directory)",
    )
    plan.set_defaults(func=cmd_plan)

    segments = stages.add_parser(
        "segments", help="dense mode: the segments of a trajectory, cut into replay jobs"
    )
    segments.add_argument("trajectory")
    segments.add_argument(
        "--job-steps", type=int, required=True, help="the least training steps a replay job holds"
    )
    segments.add_argument("--out", required=True, help="segments.json to write")
    segments.set_defaults(func=cmd_segments)

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
    _gradient_options(replay)
    replay.set_defaults(func=cmd_replay)

    gather = stages.add_parser("gather-dense", help="dense mode: one table of all segments")
    gather.add_argument("parts", nargs="+")
    gather.add_argument("--out", required=True, help="dense.parquet to write")
    gather.set_defaults(func=cmd_gather_dense)

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
    schedule.set_defaults(func=cmd_schedule)

    closed_loop = stages.add_parser(
        "closed-loop", help="a run against its retrainings on the derived and cosine schedules"
    )
    closed_loop.add_argument("trajectories", nargs="+", help="runs/{name}/trajectory.h5 each")
    closed_loop.add_argument("--summary", required=True, help="closed_loop.csv to write")
    closed_loop.add_argument("--curves", required=True, help="closed_loop_curves.csv to write")
    closed_loop.set_defaults(func=cmd_closed_loop)

    figures = stages.add_parser("figures", help="the figures of one run")
    figures.add_argument(
        "names",
        nargs="+",
        help="of figures.RUN_FIGURES: geometry, schedule, bound, dense, closed_loop",
    )
    figures.add_argument("--run-dir", required=True, help="the run's tables: runs/{run}")
    figures.add_argument("--out-dir", required=True, help="receives {name}.{format}")
    _figure_format(figures)
    figures.set_defaults(func=cmd_figures)

    ablation = stages.add_parser("ablation-figure", help="one line per level of an ablation factor")
    ablation.add_argument("factor", help="a key of the config's `ablations`")
    ablation.add_argument("geometry", nargs="+", help="geometry.parquet of each run of the factor")
    _comparison_options(ablation)
    ablation.set_defaults(func=cmd_ablation_figure)

    contrast = stages.add_parser(
        "contrast-figure", help="gamma of the networks beside the synthetic objectives"
    )
    contrast.add_argument("geometry", nargs="+", help="geometry.parquet of every run")
    _comparison_options(contrast)
    contrast.set_defaults(func=cmd_contrast_figure)

    claims = stages.add_parser("claims", help="the paper's claims checked on every run")
    claims.add_argument("--config", required=True, help=CONFIG_HELP)
    claims.add_argument("--geometry", nargs="+", required=True, help="every run's geometry.parquet")
    claims.add_argument("--schedules", nargs="*", default=[], help="every run's schedule.json")
    claims.add_argument("--csv", required=True, help="claims.csv to write")
    claims.add_argument("--html", required=True, help="claims.html to write")
    claims.set_defaults(func=cmd_claims)
    return top


def main(argv: list[str] | None = None) -> None:
    from .trajectory import TrajectoryError

    args = parser().parse_args(argv)
    try:
        args.func(args)
    except (ValueError, TrajectoryError, FileNotFoundError) as error:  # bad input: no traceback
        sys.exit(f"nwt {args.stage}: error: {error}")


if __name__ == "__main__":
    main()
