"""The results into TensorBoard: one event folder per run under one log directory, so that
`tensorboard --logdir DIR` shows the runs side by side.

    nwt export tensorboard results --logdir results/tensorboard

Per run: the scalars of metrics.py (step as the x-axis), the run's PNG figures as images and its
config as text. A run's folder is written under a temporary name and renamed, so an export that
is killed leaves the earlier export of that run whole, and exporting again replaces it.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

import numpy as np

from nowrongturns.export import MissingExtraError
from nowrongturns.export.metrics import run_metrics
from nowrongturns.results import open_results


def summary_writer():
    """torch's SummaryWriter, which needs the tensorboard package (an optional extra)."""
    try:
        import tensorboard  # noqa: F401  (SummaryWriter's own import error names no extra)
        from torch.utils.tensorboard import SummaryWriter
    except ImportError as error:
        raise MissingExtraError("nwt export tensorboard", "tensorboard", "tensorboard") from error
    return SummaryWriter


def export_tensorboard(results: str | Path, logdir: str | Path) -> list[Path]:
    """Write every run of a results directory into `logdir/{run}`; the folders written."""
    SummaryWriter = summary_writer()
    from PIL import Image

    logdir = Path(logdir)
    logdir.mkdir(parents=True, exist_ok=True)
    written = []
    for run in open_results(results):
        folder = Path(tempfile.mkdtemp(prefix=f".{run.name}.", dir=logdir))
        folder.chmod(0o755)  # mkdtemp's is the owner's alone
        try:
            writer = SummaryWriter(log_dir=str(folder))
            for name, step, value in run_metrics(run).itertuples(index=False):
                writer.add_scalar(name, value, int(step))
            for name, path in run.figures.items():
                if path.suffix == ".png":
                    with Image.open(path) as image:
                        pixels = np.asarray(image.convert("RGB"))
                    writer.add_image(f"figures/{name}", pixels, 0, dataformats="HWC")
            if (run.folder / "trajectory.h5").is_file():
                text = json.dumps(run.config, indent=2, sort_keys=True)
                writer.add_text("config", f"```\n{text}\n```", 0)
            writer.close()
            target = logdir / run.name
            if target.exists():
                shutil.rmtree(target)
            folder.rename(target)
        finally:
            shutil.rmtree(folder, ignore_errors=True)
        run.close()
        written.append(target)
    return written
