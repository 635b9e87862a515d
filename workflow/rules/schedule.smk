rule schedule:
    input:
        geometry=results_path("runs/{run}/geometry.parquet"),
        trajectory=results_path("runs/{run}/trajectory.h5"),
        # Dense mode measured every step: the bound then needs no checkpoint's values held.
        dense=(results_path("runs/{run}/dense.parquet") if DENSE else []),
    output:
        csv=results_path("runs/{run}/schedule.csv"),
        json=results_path("runs/{run}/schedule.json"),
        bound=results_path("runs/{run}/bound.csv"),
        cosine=results_path("runs/{run}/cosine.json"),
    log:
        results_path("logs/schedule/{run}.log"),
    benchmark:
        results_path("benchmarks/schedule/{run}.tsv")
    threads: stage_threads("schedule")
    resources:
        **stage_resources("schedule"),
    params:
        smooth=config["schedule"]["smooth"],
        fit=config["schedule"]["fit"],
        peak=config["schedule"]["peak"],
        ignore_last=config["schedule"]["ignore_last"],
        dense=lambda wildcards, input: f"--dense {input.dense}" if input.dense else "",
    shell:
        "nwt schedule {input.geometry:q} {input.trajectory:q} --csv {output.csv:q}"
        " --json {output.json:q} --bound {output.bound:q} --cosine {output.cosine:q}"
        " --smooth {params.smooth} --fit {params.fit} --peak {params.peak}"
        " --ignore-last {params.ignore_last} {params.dense} > {log:q} 2>&1"
