# The figures: per run (RUN_FIGURES), one per ablation factor, and the contrasting examples. Each is
# marked for `snakemake --report`, with its caption from workflow/report/.


rule figures:
    input:
        expand(results_path("runs/{{run}}/{table}"), table=FIGURE_TABLES),
    output:
        run_figure_outputs(),
    log:
        results_path("logs/figures/{run}.log"),
    benchmark:
        results_path("benchmarks/figures/{run}.tsv")
    threads: stage_threads("figures")
    resources:
        **stage_resources("figures"),
    params:
        format=FIGURE_FORMAT,
        names=" ".join(RUN_FIGURES),
        run_dir=lambda wildcards: results_path(f"runs/{wildcards.run}"),
        out_dir=lambda wildcards: results_path(f"figures/{wildcards.run}"),
        # Cited by the captions.
        settings=lambda wildcards: RUNS[wildcards.run],
        sibling=lambda wildcards: SEED_SIBLINGS.get(wildcards.run, ""),
    shell:
        "nwt figures {params.names} --run-dir {params.run_dir:q} --out-dir {params.out_dir:q}"
        " --format {params.format} > {log:q} 2>&1"


rule closed_loop_figure:
    input:
        results_path("runs/{run}/closed_loop_curves.csv"),
    output:
        report(
            results_path(f"figures/{{run}}/closed_loop.{FIGURE_FORMAT}"),
            caption="../report/closed_loop.rst",
            category="Schedules",
            subcategory="{run}",
            labels={"run": "{run}", "figure": "closed_loop"},
        ),
    log:
        results_path("logs/figures/{run}-closed_loop.log"),
    benchmark:
        results_path("benchmarks/figures/{run}-closed_loop.tsv")
    threads: stage_threads("figures")
    resources:
        **stage_resources("figures"),
    params:
        format=FIGURE_FORMAT,
        run_dir=lambda wildcards: results_path(f"runs/{wildcards.run}"),
        out_dir=lambda wildcards: results_path(f"figures/{wildcards.run}"),
        settings=lambda wildcards: RUNS[wildcards.run],
    shell:
        "nwt figures closed_loop --run-dir {params.run_dir:q} --out-dir {params.out_dir:q}"
        " --format {params.format} > {log:q} 2>&1"


rule endpoints_figure:
    input:
        results_path("runs/{run}/endpoints.parquet"),
        results_path("runs/{run}/geometry.parquet"),
    output:
        report(
            results_path(f"figures/{{run}}/endpoints.{FIGURE_FORMAT}"),
            caption="../report/endpoints.rst",
            category="Schedules",
            subcategory="{run}",
            labels={"run": "{run}", "figure": "endpoints"},
        ),
    log:
        results_path("logs/figures/{run}-endpoints.log"),
    benchmark:
        results_path("benchmarks/figures/{run}-endpoints.tsv")
    threads: stage_threads("figures")
    resources:
        **stage_resources("figures"),
    params:
        format=FIGURE_FORMAT,
        run_dir=lambda wildcards: results_path(f"runs/{wildcards.run}"),
        out_dir=lambda wildcards: results_path(f"figures/{wildcards.run}"),
        endpoints=ENDPOINTS,
    shell:
        "nwt figures endpoints --run-dir {params.run_dir:q} --out-dir {params.out_dir:q}"
        " --format {params.format} > {log:q} 2>&1"


rule ablation_figure:
    input:
        ablation_geometry,
    output:
        report(
            results_path(f"figures/ablations/{{factor}}.{FIGURE_FORMAT}"),
            caption="../report/ablation.rst",
            category="Ablations",
            labels={"factor": "{factor}"},
        ),
    log:
        results_path("logs/ablation_figure/{factor}.log"),
    benchmark:
        results_path("benchmarks/ablation_figure/{factor}.tsv")
    threads: stage_threads("figures")
    resources:
        **stage_resources("figures"),
    params:
        format=FIGURE_FORMAT,
        config=RUNS_CONFIG,
    shell:
        "nwt ablation-figure {wildcards.factor:q} {input:q} --config {params.config:q}"
        " --out {output:q} --format {params.format} > {log:q} 2>&1"


rule contrast_figure:
    input:
        geometry_tables(RUNS),
    output:
        report(
            results_path(f"figures/contrasting.{FIGURE_FORMAT}"),
            caption="../report/contrasting.rst",
            category="Contrasting examples",
            labels={"figure": "networks beside synthetic objectives"},
        ),
    log:
        results_path("logs/contrast_figure/contrasting.log"),
    benchmark:
        results_path("benchmarks/contrast_figure/contrasting.tsv")
    threads: stage_threads("figures")
    resources:
        **stage_resources("figures"),
    params:
        format=FIGURE_FORMAT,
        config=RUNS_CONFIG,
    shell:
        "nwt contrast-figure {input:q} --config {params.config:q} --out {output:q}"
        " --format {params.format} > {log:q} 2>&1"
