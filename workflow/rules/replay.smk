# Dense mode (config measure.dense): the geometry of every training step, one job per segment
# between two checkpoints. How many segments a run has is known once it is trained: the checkpoint
# rule `segments` reads it from the trajectory, and Snakemake then plans one replay job each.


checkpoint segments:
    input:
        results_path("runs/{run}/trajectory.h5"),
    output:
        results_path("runs/{run}/dense/segments.json"),
    log:
        results_path("logs/segments/{run}.log"),
    benchmark:
        results_path("benchmarks/segments/{run}.tsv")
    shell:
        "nwt segments {input:q} --out {output:q} > {log:q} 2>&1"


rule replay:
    input:
        trajectory=results_path("runs/{run}/trajectory.h5"),
        segments=results_path("runs/{run}/dense/segments.json"),
    output:
        results_path("runs/{run}/dense/{segment}.parquet"),
    log:
        results_path("logs/replay/{run}/{segment}.log"),
    benchmark:
        results_path("benchmarks/replay/{run}/{segment}.tsv")
    threads: stage_threads("replay")
    resources:
        **stage_resources("replay"),
    params:
        device=config["measure"]["device"],
    shell:
        "nwt replay {input.trajectory:q} --segment {wildcards.segment} --out {output:q}"
        " --run-name {wildcards.run:q} --device {params.device} --threads {threads}"
        " > {log:q} 2>&1"


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
