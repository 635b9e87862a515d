rule train:
    input:
        factory_sources,
    output:
        results_path("runs/{run}/trajectory.h5"),
    log:
        results_path("logs/train/{run}.log"),
    # The runs the config imports (rule import) are never trained.
    wildcard_constraints:
        run=TRAINED_PATTERN,
    # No benchmark: Snakemake allows none beside `cache` (the train log says what the job cost).
    # `snakemake --cache` (with SNAKEMAKE_OUTPUT_CACHE) reuses a trajectory that another workflow
    # trained: the cache key hashes the params, so they hold every input of training. The
    # software is this package, not a per-rule env.
    cache: "omit-software"
    threads: train_threads()
    resources:
        **stage_resources("train"),
    params:
        run=run_config_json,
        device=config["train"]["device"],
        threads=stage_threads("train"),
        launcher=TRAIN_LAUNCHER,
        precision=config["train"]["precision"],
    shell:
        "{params.launcher} train --run {params.run:q} --out {output:q}"
        " --device {params.device} --threads {params.threads} --precision {params.precision}"
        f" {TRAIN_WORKERS} > {{log:q}} 2>&1"
