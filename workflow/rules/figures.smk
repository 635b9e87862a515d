rule figures:
    input:
        geometry=results_path("runs/{run}/geometry.parquet"),
        schedule=results_path("runs/{run}/schedule.csv"),
        schedule_json=results_path("runs/{run}/schedule.json"),
        bound=results_path("runs/{run}/bound.csv"),
    output:
        expand(results_path("figures/{{run}}/{figure}"), figure=RUN_FIGURES),
    log:
        results_path("logs/figures/{run}.log"),
    benchmark:
        results_path("benchmarks/figures/{run}.tsv")
    threads: stage_threads("figures")
    resources:
        **stage_resources("figures"),
    params:
        format=FIGURE_FORMAT,
        out_dir=lambda wildcards: results_path(f"figures/{wildcards.run}"),
    shell:
        "nwt figures --geometry {input.geometry:q} --schedule {input.schedule:q}"
        " --schedule-json {input.schedule_json:q} --bound {input.bound:q} --out-dir {params.out_dir:q} --format {params.format}"
        " > {log:q} 2>&1"


rule closed_loop_figure:
    input:
        results_path("runs/{run}/closed_loop_curves.csv"),
    output:
        results_path(f"figures/{{run}}/closed_loop.{FIGURE_FORMAT}"),
    log:
        results_path("logs/figures/{run}-closed_loop.log"),
    benchmark:
        results_path("benchmarks/figures/{run}-closed_loop.tsv")
    threads: stage_threads("figures")
    resources:
        **stage_resources("figures"),
    shell:
        "nwt closed-loop-figure {input:q} --out {output:q} > {log:q} 2>&1"
