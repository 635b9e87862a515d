# The closed loop (config schedule.retrain): the base run trained again, through the train rule,
# on the schedule derived from its geometry ({run}--derived) and on warm-up + cosine at the same
# peak ({run}--cosine), with the same model, data order and step budget; then the three compared.


use rule train as retrain with:
    input:
        loop_schedule_file,
        factory_sources,
    output:
        results_path("runs/{run}--{loop}/trajectory.h5"),
    log:
        results_path("logs/train/{run}--{loop}.log"),
    # Cached between workflows, as train is (hence no benchmark). These params replace train's
    # as a whole, so they repeat all but the run.
    params:
        run=loop_run_config_json,
        device=config["train"]["device"],
        threads=stage_threads("train"),
        launcher=TRAIN_LAUNCHER,
        precision=config["train"]["precision"],


rule closed_loop:
    input:
        results_path("runs/{run}/trajectory.h5"),
        expand(results_path("runs/{{run}}--{loop}/trajectory.h5"), loop=LOOP_SCHEDULES),
    output:
        summary=results_path("runs/{run}/closed_loop.csv"),
        curves=results_path("runs/{run}/closed_loop_curves.csv"),
    log:
        results_path("logs/closed_loop/{run}.log"),
    benchmark:
        results_path("benchmarks/closed_loop/{run}.tsv")
    threads: stage_threads("schedule")
    resources:
        **stage_resources("schedule"),
    shell:
        "nwt closed-loop {input:q} --summary {output.summary:q}"
        " --curves {output.curves:q} > {log:q} 2>&1"
