"""The notebook tutorial (docs/tutorial.ipynb) runs: executed cell by cell in a real Jupyter
kernel, the venv's own Python, on a small results directory; its figures are saved."""

from __future__ import annotations

import json
import sys

import nbformat
import pytest
from helpers.runs import REPO
from nbclient import NotebookClient

KERNEL = "nowrongturns-tests"


@pytest.mark.slow
def test_tutorial_notebook_runs_and_saves_its_figures(small_results, tmp_path, monkeypatch):
    # A kernel spec of this interpreter: the one the machine calls python3 may be another Python.
    spec = tmp_path / "jupyter" / "kernels" / KERNEL
    spec.mkdir(parents=True)
    argv = [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    (spec / "kernel.json").write_text(
        json.dumps({"argv": argv, "display_name": KERNEL, "language": "python"})
    )
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    monkeypatch.setenv("NWT_RESULTS", str(small_results))
    notebook = nbformat.read(REPO / "docs/tutorial.ipynb", as_version=4)
    assert all(not cell.get("outputs") for cell in notebook.cells), "commit it without outputs"
    client = NotebookClient(
        notebook,
        kernel_name=KERNEL,
        timeout=300,
        resources={"metadata": {"path": str(REPO / "docs")}},
    )
    client.execute()
    outputs = [output for cell in notebook.cells for output in cell.get("outputs", [])]
    printed = "".join(output.get("text", "") for output in outputs)
    assert "checkpoint at step 20 of 44" in printed
    assert "halfway  step   20: validation loss" in printed and "w*       step   44" in printed
    assert sum("image/png" in output.get("data", {}) for output in outputs) == 2
    for name in ("gamma_by_seed.png", "loss_and_checkpoint.png"):
        saved = small_results / "figures" / "tutorial" / name
        assert saved.read_bytes().startswith(b"\x89PNG"), saved
