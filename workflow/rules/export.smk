# The results where researchers look beside their own runs (config `export`): every run's
# geometry along training, tables and figures, in TensorBoard or MLflow, once all are made.


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
        results=lambda wildcards: config["results"],
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
        results=lambda wildcards: config["results"],
        tracking_uri=(EXPORT["mlflow"] or {}).get("tracking_uri"),
        experiment=(EXPORT["mlflow"] or {}).get("experiment"),
    shell:
        "nwt export mlflow {params.results:q} --tracking-uri {params.tracking_uri:q}"
        " --experiment {params.experiment:q} --record {output:q} > {log:q} 2>&1"
