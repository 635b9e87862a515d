# Dense mode (config measure.dense): the geometry of every training step, replayed in parallel jobs
# of consecutive segments between two checkpoints. How many segments a run has is known once it is
# trained: the checkpoint rule `segments` reads them from the trajectory and cuts them into jobs of
# at least measure.dense_job_steps steps, and Snakemake then plans one replay job each.


checkpoint segments:
    input:
        results_path("runs/{run}/trajectory.h5"),
    output:
        results_path("runs/{run}/dense/segments.json"),
    log:
        results_path("logs/segments/{run}.log"),
    benchmark:
        results_path("benchmarks/segments/{run}.tsv")
    params:
        job_steps=config["measure"]["dense_job_steps"],
    shell:
        "nwt segments {input:q} --job-steps {params.job_steps} --out {output:q} > {log:q} 2>&1"


rule replay:
    input:
        trajectory=results_path("runs/{run}/trajectory.h5"),
        segments=results_path("runs/{run}/dense/segments.json"),
        sibling=sibling_trajectory,
    output:
        results_path("runs/{run}/dense/{first}-{last}.parquet"),
    log:
        results_path("logs/replay/{run}/{first}-{last}.log"),
    benchmark:
        results_path("benchmarks/replay/{run}/{first}-{last}.tsv")
    threads: stage_threads("replay")
    resources:
        **stage_resources("replay"),
    params:
        device=config["measure"]["device"],
        trust=trust_options,
        sibling=sibling_option,
    shell:
        "nwt replay {input.trajectory:q} --segments {wildcards.first} {wildcards.last}"
        " --out {output:q} {params.trust} {params.sibling}"
        " --run-name {wildcards.run:q} --device {params.device} --threads {threads}"
        f" {MEASURE_WORKERS} > {{log:q}} 2>&1"


rule dense:
    input:
        replayed_segments,
    output:
        results_path("runs/{run}/dense.parquet"),
    log:
        results_path("logs/dense/{run}.log"),
    benchmark:
        results_path("benchmarks/dense/{run}.tsv")
    shell:
        "nwt gather-dense {input:q} --out {output:q} > {log:q} 2>&1"
