# nowrongturns: train -> trajectory.h5 -> geometry.parquet -> schedule -> figures, per run.
# Runs come from config.yaml: `base`, and one run per ablation value (DESIGN.md section 6).
from snakemake.utils import min_version

min_version("9.19")


configfile: "config.yaml"


# Validates the config against workflow/schemas/ (filling defaults) and defines RUNS and helpers.
include: "workflow/rules/common.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/measure.smk"
include: "workflow/rules/replay.smk"
include: "workflow/rules/schedule.smk"
include: "workflow/rules/figures.smk"


rule all:
    input:
        expand(results_path("runs/{run}/{table}"), run=RUNS, table=RUN_TABLES),
        expand(
            results_path("figures/{run}/{figure}.{format}"),
            run=RUNS,
            figure=RUN_FIGURES,
            format=FIGURE_FORMAT,
        ),
        expand(results_path("runs/{run}/dense.parquet"), run=RUNS if DENSE else []),
