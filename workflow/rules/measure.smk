rule measure:
    input:
        results_path("runs/{run}/trajectory.h5"),
    output:
        results_path("runs/{run}/geometry.parquet"),
    log:
        results_path("logs/measure/{run}.log"),
    benchmark:
        results_path("benchmarks/measure/{run}.tsv")
    threads: stage_resources("measure", "threads")
    resources:
        mem_mb=stage_resources("measure", "mem_mb"),
    params:
        samples=config["measure"]["samples"],
        full_batch=(
            "--full-batch" if config["measure"]["full_batch"] else "--no-full-batch"
        ),
        random_labels=(
            "--random-labels"
            if config["measure"]["random_labels"]
            else "--no-random-labels"
        ),
        device=config["measure"]["device"],
    shell:
        "nwt measure {input:q} --out {output:q} --run-name {wildcards.run:q}"
        " --samples {params.samples} {params.full_batch} {params.random_labels}"
        " --device {params.device} --threads {threads} > {log:q} 2>&1"
