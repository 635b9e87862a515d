# The figures of each run (RUN_FIGURES), each marked for `snakemake --report` with its caption from
# workflow/report/.


rule figures:
    input:
        expand(results_path("runs/{{run}}/{table}"), table=FIGURE_TABLES),
    output:
        run_figure_outputs(),
    log:
        results_path("logs/figures/{run}.log"),
    benchmark:
        results_path("benchmarks/figures/{run}.tsv")
    threads: stage_resources("figures", "threads")
    resources:
        mem_mb=stage_resources("figures", "mem_mb"),
    params:
        format=FIGURE_FORMAT,
        names=" ".join(RUN_FIGURES),
        run_dir=lambda wildcards: results_path(f"runs/{wildcards.run}"),
        out_dir=lambda wildcards: results_path(f"figures/{wildcards.run}"),
        # Cited by the captions.
        settings=lambda wildcards: RUNS[wildcards.run],
    shell:
        "nwt figures {params.names} --run-dir {params.run_dir:q} --out-dir {params.out_dir:q}"
        " --format {params.format} > {log:q} 2>&1"
