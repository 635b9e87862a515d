"""The results where researchers look beside their own runs: TensorBoard and MLflow.

    nwt export tensorboard results --logdir results/tensorboard
    nwt export mlflow results --tracking-uri http://127.0.0.1:5000 --experiment digits

metrics.py: the scalars along training both log; tensorboard.py, tracking.py: the exporters.
Each tracker's package is an optional extra (`nowrongturns[tensorboard]`, `nowrongturns[mlflow]`),
imported only when its export runs.
"""


class MissingExtraError(ImportError):
    """An exporter's package is not installed; the message names the extra to install."""

    def __init__(self, command: str, package: str, extra: str):
        super().__init__(
            f"{command} needs the {package} package, an optional extra: "
            f"pip install 'nowrongturns[{extra}]'"
        )
