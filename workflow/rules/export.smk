# The results where researchers look beside their own runs (config `export`): every run's
# geometry along training, tables and figures, in TensorBoard or MLflow, once all are made.


def exported_files(wildcards):
    """What the exporters read: every run's tables and figures, and the closed loop's runs."""
    return [
        *expand(results_path("runs/{run}/{table}"), run=RUNS, table=RUN_TABLES),
        *expand(results_path("runs/{run}/{table}"), run=RUNS, table=ANALYSIS_TABLES),
        *expand(
            results_path("figures/{run}/{figure}.{format}"),
            run=RUNS,
            figure=RUN_FIGURES,
            format=FIGURE_FORMAT,
        ),
        *expand(results_path("runs/{run}/dense.parquet"), run=RUNS if DENSE else []),
        *expand(results_path("runs/{run}/closed_loop.csv"), run=RETRAINED),
    ]


rule export_tensorboard:
    input:
        exported_files,
    output:
        directory(results_path("tensorboard")),
    log:
        results_path("logs/export/tensorboard.log"),
    benchmark:
        results_path("benchmarks/export/tensorboard.tsv")
    threads: stage_threads("figures")
    resources:
        **stage_resources("figures"),
    params:
        results=config["results"],
    shell:
        "nwt export tensorboard {params.results:q} --logdir {output:q} > {log:q} 2>&1"


rule export_mlflow:
    input:
        exported_files,
    output:
        results_path("mlflow.json"),
    log:
        results_path("logs/export/mlflow.log"),
    benchmark:
        results_path("benchmarks/export/mlflow.tsv")
    threads: stage_threads("figures")
    resources:
        **stage_resources("figures"),
    params:
        results=config["results"],
        tracking_uri=(EXPORT["mlflow"] or {}).get("tracking_uri"),
        experiment=(EXPORT["mlflow"] or {}).get("experiment"),
    shell:
        "nwt export mlflow {params.results:q} --tracking-uri {params.tracking_uri:q}"
        " --experiment {params.experiment:q} --record {output:q} > {log:q} 2>&1"
