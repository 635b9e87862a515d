"""Results where researchers look: a results directory, or one run folder, in Python.

    import nowrongturns
    results = nowrongturns.open_results("results")
    results.runs                       # ['base', 'batch_size=16', ...]: a listing, nothing read
    run = results["base"]              # or nowrongturns.open_run("results/runs/base")
    run.config                         # the run config, from the trajectory's attributes
    run.geometry                       # DataFrame, its metadata in .attrs
    run.figures                        # {"geometry": Path(...png), ...}
    run.trajectory.weights(step)       # named tensors for model.load_state_dict
    run.trajectory.model(step)         # or the run's model itself, rebuilt

Read-only and lazy: a file is opened when something in it is asked for, torch imported when
weights are.
"""

from nowrongturns.results.folders import Results, Run, open_results, open_run
from nowrongturns.results.trajectory import Trajectory

__all__ = ["Results", "Run", "Trajectory", "open_results", "open_run"]
