rule measure:
    input:
        results_path("runs/{run}/trajectory.h5"),
    output:
        results_path("runs/{run}/geometry.parquet"),
    log:
        results_path("logs/measure/{run}.log"),
    benchmark:
        results_path("benchmarks/measure/{run}.tsv")
    threads: stage_threads("measure")
    resources:
        **stage_resources("measure"),
    params:
        samples=config["measure"]["samples"],
        sources=" ".join(
            measure_flag(key) for key in ("full_batch", "random_labels", "update")
        ),
        device=config["measure"]["device"],
        precision=config["measure"]["precision"],
    shell:
        "nwt measure {input:q} --out {output:q} --run-name {wildcards.run:q}"
        " --samples {params.samples} {params.sources} --precision {params.precision}"
        f" --device {{params.device}} --threads {{threads}} {MEASURE_WORKERS} > {{log:q}} 2>&1"
