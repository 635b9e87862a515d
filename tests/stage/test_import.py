"""`nwt import`: checkpoints a finished training left (.pt, safetensors) into a trajectory whose
weights are the files' to the bit, and each malformed input stopped with its file named, nothing
written, no code a pickle carries run. (Lightning .ckpt files and Hugging Face checkpoint
folders, written by the real frameworks: test_integrations.py.)"""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers.runs import one_line_error
from safetensors.torch import save_file

from nowrongturns.models import build_model
from nowrongturns.record.checkpoint_files import CheckpointError
from nowrongturns.record.importer import import_trajectory
from nowrongturns.tasks.load import load_task
from nowrongturns.trajectory.reader import TrajectoryReader

RUN = {"task": "digits", "model": "mlp", "width": 16, "depth": 1, "seed": 0, "batch_size": 32}
RUN.update(optimizer="sgd", lr=0.05, weight_decay=0.0, clip_grad_norm=None)
STEPS = (0, 5, 10, 15)


def trained_states(steps=STEPS) -> dict[int, dict[str, torch.Tensor]]:
    """The model's state dict after each of `steps` steps of plain SGD on digits."""
    task = load_task(RUN)
    torch.manual_seed(0)
    model = build_model(RUN, task)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    draws = torch.Generator().manual_seed(0)
    states = {}
    for step in range(max(steps) + 1):
        if step in steps:
            states[step] = {k: v.clone() for k, v in model.state_dict().items()}
        inputs, targets = task.batch(torch.randperm(task.train_size, generator=draws)[:32])
        optimizer.zero_grad()
        task.loss(model(inputs), targets).backward()
        optimizer.step()
    return states


def flat(state: dict[str, torch.Tensor]) -> np.ndarray:
    return torch.cat([tensor.reshape(-1) for tensor in state.values()]).numpy()


def assert_imported(trajectory: Path, states: dict) -> None:
    """Origin, steps, and every checkpoint's weights equal to the file's, bit for bit (the MLP
    has no buffers: its state dict is its parameters in order)."""
    with TrajectoryReader(trajectory) as traj:
        assert traj.origin == "imported" and traj.step_columns == ()
        assert list(traj.checkpoint_steps) == sorted(states)
        for index, step in enumerate(sorted(states)):
            np.testing.assert_array_equal(traj.weights(index), flat(states[step]))


@pytest.fixture(scope="module")
def states():
    return trained_states()


def nwt_import(*args) -> subprocess.CompletedProcess:
    command = [Path(sys.executable).parent / "nwt", "import", *map(str, args)]
    return subprocess.run(command, capture_output=True, text=True, timeout=300)


def test_a_folder_of_pt_files(tmp_path, states):
    for step, state in states.items():
        torch.save(state, tmp_path / f"model_step{step}.pt")
    out = tmp_path / "runs/base/trajectory.h5"
    result = nwt_import(tmp_path / "*.pt", "--run", json.dumps(RUN), "--out", out)
    assert result.returncode == 0, result.stderr
    assert_imported(out, states)


def test_safetensors_with_steps_given(tmp_path, states):
    for index, state in enumerate(states.values()):
        save_file(state, tmp_path / f"{'abcd'[index]}.safetensors")
    out = tmp_path / "trajectory.h5"
    import_trajectory(RUN, [str(tmp_path / "*.safetensors")], str(out), steps=list(STEPS))
    assert_imported(out, states)


def test_a_state_dict_under_a_key_and_a_wrapper_prefix(tmp_path, states):
    for step, state in states.items():
        wrapped = {f"module.{name}": tensor for name, tensor in state.items()}
        torch.save({"model_state_dict": wrapped, "step": step}, tmp_path / f"step_{step}.pth")
    out = tmp_path / "trajectory.h5"
    import_trajectory(RUN, [str(tmp_path / "*.pth")], str(out))
    assert_imported(out, states)


class CarriesCode:
    """A pickle that would run a command when loaded without weights_only."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def malformed(folder: Path, states: dict, case: str) -> Path:
    """Checkpoints at steps 0 and 5 in `folder`, the second one malformed as `case` says; the
    file that the error must name."""
    torch.save(states[0], folder / "step_0.pt")
    bad = folder / "step_5.pt"
    state = dict(states[5])
    if case == "wrong key":
        state["1.weights"] = state.pop("1.weight")
    elif case == "wrong shape":
        state["1.weight"] = state["1.weight"][:, :-1]
    elif case == "repeated step":
        bad = folder / "again_step_0.pt"
    elif case == "not a checkpoint":
        bad.write_text("step,loss\n5,0.3\n")
        return bad
    elif case == "pickle carrying code":
        state = {"weights": CarriesCode(folder / "code-ran")}
    torch.save(state, bad)
    return bad


@pytest.mark.parametrize(
    "case, message",
    [
        ("wrong key", r"keys do not match the model's: missing \['1.weight'\], unexpected"),
        ("wrong shape", r"key '1.weight' has shape \(16, 63\), the model's \(16, 64\)"),
        ("repeated step", r"step 0 repeated \(also .*step_0.pt\)"),
        ("not a checkpoint", "not a PyTorch checkpoint"),
        ("pickle carrying code", r"refused by torch.load\(weights_only=True\).*GLOBAL"),
    ],
)
def test_malformed_input_is_named_and_nothing_is_written(tmp_path, states, case, message):
    sources = tmp_path / "ckpts"
    sources.mkdir()
    bad = malformed(sources, states, case)
    out = tmp_path / "runs/base/trajectory.h5"
    with pytest.raises(CheckpointError, match=message) as error:
        import_trajectory(RUN, [str(sources / "*.pt")], str(out))
    assert f"{bad}" in str(error.value)  # a repeated step names both files
    assert not out.exists() and not out.with_name(out.name + ".partial").exists()
    assert not (sources / "code-ran").exists()  # the pickle's command never ran


def test_the_command_says_the_error_in_one_line(tmp_path, states):
    bad = malformed(tmp_path, states, "pickle carrying code")
    out = tmp_path / "trajectory.h5"
    result = nwt_import(tmp_path / "*.pt", "--run", json.dumps(RUN), "--out", out)
    assert result.returncode == 1 and not out.exists() and not (tmp_path / "code-ran").exists()
    assert one_line_error(result.stderr).startswith(
        f"nwt import: error: {bad}: refused by torch.load"
    )
