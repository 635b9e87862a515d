"""`nwt <stage>`: each workflow stage as a command that works on files, without Snakemake.

    nwt train --run config/run.yaml --out results/runs/base/trajectory.h5
    nwt measure results/runs/base/trajectory.h5 --out results/runs/base/geometry.parquet
    nwt schedule results/runs/base/geometry.parquet results/runs/base/trajectory.h5 \
        --csv results/runs/base/schedule.csv --json results/runs/base/schedule.json \
        --bound results/runs/base/bound.csv --cosine results/runs/base/cosine.json
    nwt closed-loop results/runs/{base,base--derived,base--cosine}/trajectory.h5 \
        --summary results/runs/base/closed_loop.csv \
        --curves results/runs/base/closed_loop_curves.csv
    nwt figures --geometry results/runs/base/geometry.parquet \
        --schedule results/runs/base/schedule.csv --schedule-json results/runs/base/schedule.json \
        --bound results/runs/base/bound.csv --out-dir results/figures/base
    nwt closed-loop-figure results/runs/base/closed_loop_curves.csv \
        --out results/figures/base/closed_loop.png
    nwt replay results/runs/base/trajectory.h5 --segment 3 --out results/runs/base/dense/3.parquet
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from pathlib import Path

from .schedule_fit import FAMILIES


def _set_threads(threads: int | None) -> None:
    import torch

    if threads:
        torch.set_num_threads(threads)


def cmd_train(args) -> None:
    started = time.perf_counter()
    import torch

    from .config import load_run_config
    from .train import train

    _set_threads(args.threads)
    run_name = args.run_name or Path(args.out).parent.name
    train(load_run_config(args.run), args.out, device=args.device, run_name=run_name)
    # What the job cost, for sizing config `resources`: the train rule has no benchmark file
    # (Snakemake allows none beside its between-workflow cache).
    cost = f"{time.perf_counter() - started:.1f} s wall, peak memory {_peak_rss_mb():.0f} MB"
    if torch.cuda.is_initialized():
        cost += f", peak GPU memory {torch.cuda.max_memory_allocated() / 2**20:.0f} MB"
    print(f"{run_name}: {cost}", file=sys.stderr)


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
    )


def cmd_segments(args) -> None:
    from .dense import write_segments

    write_segments(args.trajectory, args.out)


def cmd_replay(args) -> None:
    from .dense import replay_segment

    _set_threads(args.threads)
    run_name = args.run_name or Path(args.trajectory).parent.name
    replay_segment(args.trajectory, args.segment, args.out, run_name, device=args.device)


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

    draw_run_figures(
        args.geometry, args.schedule, args.schedule_json, args.bound, args.out_dir, args.format
    )


def cmd_closed_loop_figure(args) -> None:
    from .figures import draw_closed_loop_figure

    draw_closed_loop_figure(args.curves, args.out)


def _compute_options(stage: argparse.ArgumentParser) -> None:
    """Where a stage that runs the model computes."""
    stage.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    stage.add_argument("--threads", type=int, help="torch CPU threads")


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
    _compute_options(train)
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
    _compute_options(measure)
    measure.set_defaults(func=cmd_measure)

    segments = stages.add_parser("segments", help="dense mode: the segments of a trajectory")
    segments.add_argument("trajectory")
    segments.add_argument("--out", required=True, help="segments.json to write")
    segments.set_defaults(func=cmd_segments)

    replay = stages.add_parser(
        "replay", help="dense mode: per-step geometry of one segment between two checkpoints"
    )
    replay.add_argument("trajectory")
    replay.add_argument("--segment", type=int, required=True, help="from checkpoint k to k + 1")
    replay.add_argument("--out", required=True, help="the segment's parquet to write")
    replay.add_argument("--run-name", help="default: the name of the trajectory's directory")
    _compute_options(replay)
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
    figures.add_argument("--geometry", required=True)
    figures.add_argument("--schedule", required=True, help="schedule.csv")
    figures.add_argument("--schedule-json", required=True, help="schedule.json")
    figures.add_argument("--bound", required=True, help="bound.csv")
    figures.add_argument("--out-dir", required=True)
    figures.add_argument("--format", default="png", choices=["png", "pdf", "svg"])
    figures.set_defaults(func=cmd_figures)

    loop_figure = stages.add_parser("closed-loop-figure", help="the closed loop's figure")
    loop_figure.add_argument("curves", help="closed_loop_curves.csv")
    loop_figure.add_argument("--out", required=True, help="the figure to write (.png/.pdf/.svg)")
    loop_figure.set_defaults(func=cmd_closed_loop_figure)
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
