# The paper's claims checked on every run: results/claims.csv, and claims.html for the report.


rule claims:
    input:
        geometry=geometry_tables(RUNS),
        schedules=expand(results_path("runs/{run}/schedule.json"), run=RUNS),
        interpolation=expand(
            results_path("runs/{run}/interpolation.parquet"),
            run=RUNS if "interpolation" in ANALYSES else [],
        ),
    output:
        csv=report(
            results_path("claims.csv"),
            caption="../report/claims_csv.rst",
            category="Claims",
            labels={"table": "per run (CSV)"},
        ),
        html=report(
            results_path("claims.html"),
            caption="../report/claims.rst",
            category="Claims",
            labels={"table": "the paper's claims beside our runs"},
        ),
    log:
        results_path("logs/claims/claims.log"),
    benchmark:
        results_path("benchmarks/claims/claims.tsv")
    threads: stage_threads("figures")
    resources:
        **stage_resources("figures"),
    params:
        config=RUNS_CONFIG,
    shell:
        "nwt claims --config {params.config:q} --geometry {input.geometry:q}"
        " --schedules {input.schedules:q} --interpolation {input.interpolation:q}"
        " --csv {output.csv:q} --html {output.html:q}"
        " > {log:q} 2>&1"
