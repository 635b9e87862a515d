# The measure stage: RSI, EB and gamma along each run's path (`nwt measure`). With
# measure.job_checkpoints N, a run's measured checkpoints are cut into jobs of at most N: the
# checkpoint rule measure_jobs reads how many there are from the trajectory, Snakemake then plans
# one measure job each (one Slurm job, one GPU), and gather_geometry makes of their tables the
# geometry.parquet one job would have written.


rule measure:
    input:
        trajectory=results_path("runs/{run}/trajectory.h5"),
        jobs=measure_jobs_file,
        sibling=sibling_trajectory,
    output:
        **({"layers": results_path(MEASURE_LAYERS_OUTPUT)} if LAYERS else {}),
        geometry=results_path(MEASURE_OUTPUT),
    log:
        results_path(f"logs/measure/{MEASURE_PART}.log"),
    benchmark:
        results_path(f"benchmarks/measure/{MEASURE_PART}.tsv")
    # The longest job of most runs: each starts as soon as its trajectories exist, ahead of the
    # short jobs ready then, so that the last one does not run alone while cores idle.
    priority: 1
    threads: stage_threads("measure")
    resources:
        **stage_resources("measure"),
    params:
        samples=config["measure"]["samples"],
        sources=" ".join(
            measure_flag(key) for key in ("full_batch", "random_labels", "update")
        ),
        cadence=(
            f"--full-batch-every {config['measure']['full_batch_every']}"
            f" --fixed-batches {config['measure']['fixed_batches']}"
            f" --full-batch-chunk {config['measure']['full_batch_chunk']}"
        ),
        checkpoints=measure_checkpoints_option,
        device=config["measure"]["device"],
        precision=config["measure"]["precision"],
        trust=trust_options,
        sibling=sibling_option,
        layers=layers_option,
    shell:
        "nwt measure {input.trajectory:q} --out {output.geometry:q} {params.layers}"
        " --run-name {wildcards.run:q}"
        " --samples {params.samples} {params.sources} {params.cadence} {params.checkpoints}"
        " --precision {params.precision} {params.trust} {params.sibling}"
        f" --device {{params.device}} --threads {{threads}} {MEASURE_WORKERS} > {{log:q}} 2>&1"


if MEASURE_JOB_CHECKPOINTS:

    checkpoint measure_jobs:
        input:
            results_path("runs/{run}/trajectory.h5"),
        output:
            results_path("runs/{run}/measure/jobs.json"),
        log:
            results_path("logs/measure_jobs/{run}.log"),
        benchmark:
            results_path("benchmarks/measure_jobs/{run}.tsv")
        params:
            job_checkpoints=MEASURE_JOB_CHECKPOINTS,
        shell:
            "nwt measure-jobs {input:q} --job-checkpoints {params.job_checkpoints}"
            " --out {output:q} > {log:q} 2>&1"

    rule gather_geometry:
        input:
            **({"layers": measured_layer_parts} if LAYERS else {}),
            geometry=measured_parts,
        output:
            **({"layers": results_path("runs/{run}/layers.parquet")} if LAYERS else {}),
            geometry=results_path("runs/{run}/geometry.parquet"),
        log:
            results_path("logs/gather_geometry/{run}.log"),
        benchmark:
            results_path("benchmarks/gather_geometry/{run}.tsv")
        shell:
            "(nwt gather-geometry {input.geometry:q} --out {output.geometry:q}"
            + (
                "; nwt gather-geometry {input.layers:q} --out {output.layers:q}"
                if LAYERS
                else ""
            )
            + ") > {log:q} 2>&1"


# The base run measured against other endpoints than w_T (measure.endpoints): earlier checkpoints,
# and the end of a continuation past T (`nwt endpoints`, trained on in the same job).
rule endpoints:
    input:
        results_path("runs/{run}/trajectory.h5"),
    output:
        results_path("runs/{run}/endpoints.parquet"),
    log:
        results_path("logs/endpoints/{run}.log"),
    benchmark:
        results_path("benchmarks/endpoints/{run}.tsv")
    threads: stage_threads("measure")
    resources:
        **stage_resources("measure"),
    params:
        progress=" ".join(str(p) for p in ENDPOINTS["progress"]),
        continued=ENDPOINTS["continue"],
        samples=config["measure"]["samples"],
        device=config["measure"]["device"],
        precision=config["measure"]["precision"],
        trust=trust_options,
    shell:
        "nwt endpoints {input:q} --out {output:q} --run-name {wildcards.run:q}"
        " --progress {params.progress} --continue {params.continued}"
        " --samples {params.samples} --precision {params.precision} {params.trust}"
        f" --device {{params.device}} --threads {{threads}} {MEASURE_WORKERS} > {{log:q}} 2>&1"
