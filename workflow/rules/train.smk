rule train:
    output:
        results_path("runs/{run}/trajectory.h5"),
    log:
        results_path("logs/train/{run}.log"),
    benchmark:
        results_path("benchmarks/train/{run}.tsv")
    threads: stage_threads("train")
    resources:
        **stage_resources("train"),
    params:
        run=run_config_json,
        device=config["train"]["device"],
    shell:
        "nwt train --run {params.run:q} --out {output:q}"
        " --device {params.device} --threads {threads} > {log:q} 2>&1"
