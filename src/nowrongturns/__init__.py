"""nowrongturns: the geometry of neural-network optimization paths (RSI, EB, gamma against w*).

The package is laid out as the workflow runs, one subpackage per stage, each importing only from
the layers below it (`.importlinter` says which):

    cli/         `nwt <stage>`: every stage as a command on files
    integrations/  the recorder inside PyTorch Lightning and the Hugging Face Trainer
    export/      the results into TensorBoard and MLflow, beside a researcher's own runs
    results/     a results directory in Python: runs, configs, tables, trajectories, figures
    report/      figures and the claims table
    analyses/    more geometry along the path: interpolation, sharpness, plane, orthogonal
    schedule/    the step size derived from the geometry, the bound, the closed loop
    replay/      dense mode: the segments between checkpoints replayed
    train/       the train stage
    measure/     the measure stage: RSI, EB and gamma of sampled gradients against w*
    record/      a trajectory from any training: the recorder a loop calls, checkpoints imported
    step.py      the training step and the seeded streams, shared by train, replay and measure
    trajectory/  the trajectory file (HDF5): format, writer, reader, checkpoint state
    tasks/ models/ optim/    the data, the networks and the optimizers a run config names
    config/      the workflow config: validation, runs, sizes, the code a config may name

Public names: `nowrongturns.Task` (a task of your own, returned by a `task:` factory);
`nowrongturns.Recorder` (a trajectory recorded from a training loop of your own);
`nowrongturns.open_results(path)` and `nowrongturns.open_run(path)` (results/).
"""

__version__ = "0.1.0"

__all__ = ["Recorder", "Task", "open_results", "open_run"]


def __getattr__(name: str):
    # Imported when first asked for: `import nowrongturns` stays free of torch (and pandas).
    if name == "Task":
        from nowrongturns.tasks.task import Task

        return Task
    if name == "Recorder":
        from nowrongturns.record.recorder import Recorder

        return Recorder
    if name in ("open_results", "open_run"):
        from nowrongturns import results

        return getattr(results, name)
    raise AttributeError(f"module 'nowrongturns' has no attribute {name!r}")
