"""`nwt <stage>`: each workflow stage as a command that works on files, without Snakemake. Each
command imports its stage (and torch) only when it runs, so `nwt --help` and the commands that need
no torch start fast.

    nwt train --run config/run.yaml --out results/runs/base/trajectory.h5
    nwt measure results/runs/base/trajectory.h5 --out results/runs/base/geometry.parquet \
        [--layers results/runs/base/layers.parquet]
    nwt endpoints results/runs/base/trajectory.h5 --out results/runs/base/endpoints.parquet \
        --progress 0.5 0.75 --continue 0.25
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
    nwt interpolation results/runs/base/trajectory.h5 --out results/runs/base/interpolation.parquet
    nwt sharpness results/runs/base/trajectory.h5 --out results/runs/base/sharpness.parquet
    nwt plane results/runs/base/trajectory.h5 --out results/runs/base/plane.parquet --grid 21
    nwt orthogonal results/runs/base/trajectory.h5 --out results/runs/base/orthogonal.parquet
    nwt claims --config config.json --csv claims.csv --html claims.html \
        --geometry results/runs/*/geometry.parquet --schedules results/runs/*/schedule.json
"""

from __future__ import annotations

import os
import resource
import signal
import sys
import time
from pathlib import Path


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

    from nowrongturns.config import complete_run, load_config
    from nowrongturns.train.stage import train
    from nowrongturns.trajectory.format import DiskFullError

    _set_threads(args.threads)
    run_name = args.run_name or Path(args.out).parent.name
    try:
        train(
            complete_run(load_config(args.run)),
            args.out,
            device=args.device,
            run_name=run_name,
            data_workers=args.data_workers,
            precision=args.precision,
        )
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


def cmd_import(args) -> None:
    from nowrongturns.config import load_config
    from nowrongturns.record.importer import import_trajectory

    steps = args.steps
    if steps != ["from_name"]:
        try:
            steps = [int(step) for step in steps]
        except ValueError:
            raise ValueError(
                f"--steps {' '.join(steps)}: from_name, or one integer per checkpoint"
            ) from None
    else:
        steps = "from_name"
    out = import_trajectory(load_config(args.run), args.sources, args.out, steps)
    print(f"{out}: imported from {len(args.sources)} source(s)", file=sys.stderr)


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def cmd_measure(args) -> None:
    from nowrongturns.measure.stage import measure

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
        layers=args.layers,
        require=args.require,
    )


def cmd_endpoints(args) -> None:
    from nowrongturns.measure.endpoints import measure_endpoints

    _set_threads(args.threads)
    measure_endpoints(
        args.trajectory,
        args.out,
        run_name=args.run_name or Path(args.trajectory).parent.name,
        progress=args.progress,
        continued=args.continued,
        samples=args.samples,
        device=args.device,
        data_workers=args.data_workers,
        precision=args.precision,
        trusted=args.trust,
    )


def cmd_measure_jobs(args) -> None:
    from nowrongturns.measure.jobs import measure_jobs

    measure_jobs(args.trajectory, args.out, args.job_checkpoints)


def cmd_gather_geometry(args) -> None:
    from nowrongturns.measure.jobs import gather

    gather(args.parts, args.out)


def cmd_plan(args) -> None:
    from nowrongturns.cli.cost import print_plan

    for config in args.configs:
        print_plan(config, args.schema)


def cmd_segments(args) -> None:
    from nowrongturns.replay.segments import write_segments

    write_segments(args.trajectory, args.out, args.job_steps)


def cmd_replay(args) -> None:
    from nowrongturns.replay.stage import replay_segments

    _set_threads(args.threads)
    run_name = args.run_name or Path(args.trajectory).parent.name
    first, last = args.segments
    replay_segments(
        args.trajectory,
        first,
        last,
        args.out,
        run_name,
        device=args.device,
        data_workers=args.data_workers,
        trusted=args.trust,
        other_final=args.other_final,
    )


def cmd_gather_dense(args) -> None:
    from nowrongturns.replay.stage import gather

    gather(args.parts, args.out)


def cmd_schedule(args) -> None:
    from nowrongturns.schedule.stage import derive_schedule

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
    from nowrongturns.schedule.closed_loop import compare

    compare(args.trajectories, args.summary, args.curves)


def cmd_figures(args) -> None:
    from nowrongturns.report.figures import draw_run_figures

    draw_run_figures(args.run_dir, args.out_dir, args.names, fmt=args.format)


def _workflow_config(text_or_path: str) -> dict:
    """A workflow config, whole or partial, with the schema's defaults filled in as the workflow
    fills them."""
    from nowrongturns.config import default_schema, load_config, validate_config

    return validate_config(load_config(text_or_path, "workflow config"), default_schema())


def _geometry_tables(paths: list[str], kind: str = "geometry") -> dict:
    """Run name (from its `run` column) -> table (a geometry table, or another `kind`)."""
    from nowrongturns.tables import GEOMETRY_COLUMNS, read_parquet

    columns = GEOMETRY_COLUMNS if kind == "geometry" else {"run": "string"}
    tables = {}
    for path in paths:
        table = read_parquet(path, kind, columns)
        if table["run"].nunique() != 1:
            raise ValueError(f"{path}: the {kind} table holds runs {list(table['run'].unique())}")
        tables[str(table["run"].iloc[0])] = table
    return tables


def _check_runs(tables: dict, paths: list[str], config: dict, kind: str = "geometry") -> None:
    """Every run of the config has its table, or the error names the tables given."""
    from nowrongturns.config import expand_runs

    missing = sorted(set(expand_runs(config)) - set(tables))
    if missing:
        raise ValueError(
            f"no {kind} table of run {missing} among {', '.join(map(str, paths))} "
            f"(they hold runs {sorted(tables)})"
        )


def cmd_ablation_figure(args) -> None:
    from nowrongturns.report.comparisons import ablation_figure
    from nowrongturns.report.figures import save_figure

    config = _workflow_config(args.config)
    if args.factor not in config["ablations"]:
        raise ValueError(f"{args.factor!r} is not a factor of `ablations` in the config")
    figure = ablation_figure(_geometry_tables(args.geometry), config, args.factor)
    save_figure(figure, args.out, args.format)


def cmd_contrast_figure(args) -> None:
    from nowrongturns.report.comparisons import contrast_figure
    from nowrongturns.report.figures import save_figure

    config = _workflow_config(args.config)
    save_figure(contrast_figure(_geometry_tables(args.geometry), config), args.out, args.format)


def cmd_claims(args) -> None:
    from nowrongturns.report.claims import write_claims

    config = _workflow_config(args.config)
    tables = _geometry_tables(args.geometry)
    _check_runs(tables, args.geometry, config)
    write_claims(
        tables,
        args.schedules,
        config,
        args.csv,
        args.html,
        _geometry_tables(args.interpolation, "interpolation"),
    )


def cmd_interpolation(args) -> None:
    from nowrongturns.analyses.interpolation import interpolate

    _set_threads(args.threads)
    interpolate(
        args.trajectory,
        args.out,
        _run_name(args),
        points=args.points,
        examples=args.examples,
        refine_to=args.resolution if args.refine else None,
        device=args.device,
        trusted=args.trust,
    )


def cmd_sharpness(args) -> None:
    from nowrongturns.analyses.sharpness import sharpness

    _set_threads(args.threads)
    sharpness(
        args.trajectory,
        args.out,
        _run_name(args),
        examples=args.examples,
        iterations=args.iterations,
        tolerance=args.tolerance,
        batches=args.batches,
        device=args.device,
        trusted=args.trust,
    )


def cmd_plane(args) -> None:
    from nowrongturns.analyses.plane import plane

    _set_threads(args.threads)
    plane(
        args.trajectory,
        args.out,
        _run_name(args),
        grid=args.grid,
        examples=args.examples,
        margin=args.margin,
        device=args.device,
        trusted=args.trust,
    )


def cmd_orthogonal(args) -> None:
    from nowrongturns.analyses.orthogonal import orthogonal

    _set_threads(args.threads)
    orthogonal(
        args.trajectory,
        args.out,
        _run_name(args),
        lags=args.lags,
        device=args.device,
        data_workers=args.data_workers,
        trusted=args.trust,
    )


def _run_name(args) -> str:
    return args.run_name or Path(args.trajectory).parent.name


def cmd_export_tensorboard(args) -> None:
    from nowrongturns.export.tensorboard import export_tensorboard

    for folder in export_tensorboard(args.results, args.logdir):
        print(folder)


def cmd_export_mlflow(args) -> None:
    import json

    from nowrongturns.export.tracking import export_mlflow
    from nowrongturns.files import written

    ids = export_mlflow(args.results, args.tracking_uri, args.experiment)
    if args.record:
        with written(args.record) as tmp:
            Path(tmp).write_text(json.dumps(ids, indent=1, sort_keys=True) + "\n")
