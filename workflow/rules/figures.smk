rule figures:
    input:
        geometry=results_path("runs/{run}/geometry.parquet"),
        schedule=results_path("runs/{run}/schedule.csv"),
    output:
        expand(results_path("figures/{{run}}/{figure}"), figure=RUN_FIGURES),
    log:
        results_path("logs/figures/{run}.log"),
    benchmark:
        results_path("benchmarks/figures/{run}.tsv")
    threads: stage_resources("figures", "threads")
    resources:
        mem_mb=stage_resources("figures", "mem_mb"),
    params:
        format=config["figures"]["format"],
        out_dir=lambda wildcards: results_path(f"figures/{wildcards.run}"),
    shell:
        "nwt figures --geometry {input.geometry:q} --schedule {input.schedule:q}"
        " --out-dir {params.out_dir:q} --format {params.format} > {log:q} 2>&1"
