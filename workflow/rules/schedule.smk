rule schedule:
    input:
        geometry=results_path("runs/{run}/geometry.parquet"),
        trajectory=results_path("runs/{run}/trajectory.h5"),
    output:
        csv=results_path("runs/{run}/schedule.csv"),
        json=results_path("runs/{run}/schedule.json"),
    log:
        results_path("logs/schedule/{run}.log"),
    benchmark:
        results_path("benchmarks/schedule/{run}.tsv")
    threads: stage_resources("schedule", "threads")
    resources:
        mem_mb=stage_resources("schedule", "mem_mb"),
    params:
        smooth=config["schedule"]["smooth"],
    shell:
        "nwt schedule {input.geometry:q} {input.trajectory:q} --csv {output.csv:q}"
        " --json {output.json:q} --smooth {params.smooth} > {log:q} 2>&1"
