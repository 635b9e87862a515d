# nowrongturns: train -> trajectory.h5 -> geometry.parquet -> schedule -> figures, per run;
# the base run retrained on its derived schedule (the closed loop).
# Runs come from config.yaml: `base`, and one run per ablation value (docs/config.md).
from snakemake.utils import min_version

min_version("9.19")


configfile: "config.yaml"


# `snakemake --report results/report.html`: this page, then every figure and the claims table.
report: "workflow/report/workflow.rst"


# Validates the config against workflow/schemas/ (filling defaults) and defines RUNS and helpers.
include: "workflow/rules/common.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/import.smk"
include: "workflow/rules/measure.smk"
include: "workflow/rules/replay.smk"
include: "workflow/rules/analyses.smk"
include: "workflow/rules/schedule.smk"
include: "workflow/rules/retrain.smk"
include: "workflow/rules/figures.smk"
include: "workflow/rules/claims.smk"
include: "workflow/rules/export.smk"


rule all:
    input:
        expand(results_path("runs/{run}/{table}"), run=RUNS, table=RUN_TABLES),
        expand(results_path("runs/{run}/{table}"), run=RUNS, table=ANALYSIS_TABLES),
        expand(
            results_path("figures/{run}/{figure}.{format}"),
            run=RUNS,
            figure=RUN_FIGURES,
            format=FIGURE_FORMAT,
        ),
        expand(
            results_path("figures/ablations/{factor}.{format}"),
            factor=ABLATION_LEVELS,
            format=FIGURE_FORMAT,
        ),
        results_path(f"figures/contrasting.{FIGURE_FORMAT}") if CONTRAST else [],
        results_path("claims.csv"),
        expand(results_path("runs/{run}/dense.parquet"), run=RUNS if DENSE else []),
        expand(results_path("runs/{run}/closed_loop.csv"), run=RETRAINED),
        expand(results_path("runs/{run}/endpoints.parquet"), run=ENDPOINT_RUNS),
        expand(
            results_path(f"figures/{{run}}/endpoints.{FIGURE_FORMAT}"),
            run=ENDPOINT_RUNS,
        ),
        expand(
            results_path(f"figures/{{run}}/closed_loop.{FIGURE_FORMAT}"), run=RETRAINED
        ),
        EXPORT_OUTPUTS,
