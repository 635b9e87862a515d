# The import stage (`nwt import`): for a run whose config says `trajectory_from`, the trajectory
# comes from the checkpoints a finished training left, or from a recording of the user's own
# training (nowrongturns.Recorder), instead of the train rule; every later stage reads it alike.


rule import:
    input:
        sources=import_sources,
        factories=factory_sources,
    output:
        results_path("runs/{run}/trajectory.h5"),
    log:
        results_path("logs/import/{run}.log"),
    benchmark:
        results_path("benchmarks/import/{run}.tsv")
    wildcard_constraints:
        run=IMPORTED_PATTERN,
    params:
        run=run_config_json,
        steps=import_steps,
    shell:
        "nwt import {input.sources:q} --run {params.run:q} --steps {params.steps}"
        " --out {output:q} > {log:q} 2>&1"
