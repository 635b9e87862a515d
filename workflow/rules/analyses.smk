# More geometry along each run's path (config `analyses`, docs/analyses.md): one rule per analysis,
# defined only where the analysis is on, each reading the run's trajectory alone. Its params are
# its settings, as `nwt <analysis>` options, so that a changed setting reruns that analysis (and
# the figures) and nothing else. interpolation, sharpness and plane evaluate the model at
# checkpoints, as measure does, on measure's resources; orthogonal replays the training steps, as
# replay does, on replay's.


if "interpolation" in ANALYSES:

    rule interpolation:
        input:
            results_path("runs/{run}/trajectory.h5"),
        output:
            results_path("runs/{run}/interpolation.parquet"),
        log:
            results_path("logs/interpolation/{run}.log"),
        benchmark:
            results_path("benchmarks/interpolation/{run}.tsv")
        threads: stage_threads("measure")
        resources:
            **stage_resources("measure"),
        params:
            settings=analysis_options("interpolation"),
            device=config["measure"]["device"],
            trust=trust_options,
        shell:
            "nwt interpolation {input:q} --out {output:q} --run-name {wildcards.run:q}"
            " {params.settings} {params.trust} --device {params.device} --threads {threads}"
            " > {log:q} 2>&1"


if "sharpness" in ANALYSES:

    rule sharpness:
        input:
            results_path("runs/{run}/trajectory.h5"),
        output:
            results_path("runs/{run}/sharpness.parquet"),
        log:
            results_path("logs/sharpness/{run}.log"),
        benchmark:
            results_path("benchmarks/sharpness/{run}.tsv")
        threads: stage_threads("measure")
        resources:
            **stage_resources("measure"),
        params:
            settings=analysis_options("sharpness"),
            device=config["measure"]["device"],
            trust=trust_options,
        shell:
            "nwt sharpness {input:q} --out {output:q} --run-name {wildcards.run:q}"
            " {params.settings} {params.trust} --device {params.device} --threads {threads}"
            " > {log:q} 2>&1"


if "plane" in ANALYSES:

    rule plane:
        input:
            results_path("runs/{run}/trajectory.h5"),
        output:
            results_path("runs/{run}/plane.parquet"),
        log:
            results_path("logs/plane/{run}.log"),
        benchmark:
            results_path("benchmarks/plane/{run}.tsv")
        threads: stage_threads("measure")
        resources:
            **stage_resources("measure"),
        params:
            settings=analysis_options("plane"),
            device=config["measure"]["device"],
            trust=trust_options,
        shell:
            "nwt plane {input:q} --out {output:q} --run-name {wildcards.run:q}"
            " {params.settings} {params.trust} --device {params.device} --threads {threads}"
            " > {log:q} 2>&1"


if "orthogonal" in ANALYSES:

    rule orthogonal:
        input:
            results_path("runs/{run}/trajectory.h5"),
        output:
            results_path("runs/{run}/orthogonal.parquet"),
        log:
            results_path("logs/orthogonal/{run}.log"),
        benchmark:
            results_path("benchmarks/orthogonal/{run}.tsv")
        threads: stage_threads("replay")
        resources:
            **stage_resources("replay"),
        params:
            settings=analysis_options("orthogonal"),
            device=config["measure"]["device"],
            trust=trust_options,
        shell:
            "nwt orthogonal {input:q} --out {output:q} --run-name {wildcards.run:q}"
            " {params.settings} {params.trust} --device {params.device} --threads {threads}"
            f" {MEASURE_WORKERS} > {{log:q}} 2>&1"
