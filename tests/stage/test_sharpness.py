"""Sharpness against the optimizer's own threshold, checked where the answer is known: the
quadratic's A, Rosenbrock's closed-form Hessian, and dense Hessians of a model small enough."""

import numpy as np
import pandas as pd
import pytest
import torch
from helpers.runs import REPO, SCHEMA, stored, tiny_run

from nowrongturns.analyses.curvature import Offload, hessian_product
from nowrongturns.analyses.evaluation import evaluation_indices
from nowrongturns.analyses.sharpness import sharpness, sharpness_batches
from nowrongturns.config import expand_runs, validate_config
from nowrongturns.models import build_model
from nowrongturns.optim.optimizers import build_optimizer
from nowrongturns.optim.state import load_state_vector
from nowrongturns.report.analysis_figures import sharpness_figure
from nowrongturns.tasks.load import load_task
from nowrongturns.train.stage import train
from nowrongturns.trajectory.reader import TrajectoryReader

EVERYTHING = 10**9  # examples: the whole training set


def default_run(name: str) -> dict:
    import yaml

    config = yaml.safe_load((REPO / "config.yaml").read_text())
    return expand_runs(validate_config(config, SCHEMA))[name]


def test_heavy_ball_quadratic_sharpness_is_a_top_eigenvalue_beside_its_threshold(tmp_path):
    beta = 0.9
    run = {**default_run("quadratic"), "optimizer": "momentum", "momentum": beta, "lr": 0.1}
    trajectory = tmp_path / "trajectory.h5"
    train(run, trajectory, device="cpu")
    out = tmp_path / "sharpness.parquet"
    table = sharpness(trajectory, out, "quadratic", examples=EVERYTHING, batches=1, device="cpu")
    assert len(table) == len(stored(trajectory)["checkpoint_steps"]) - 1
    np.testing.assert_allclose(table["lambda_max"], 1.0, rtol=1e-4)  # A's largest eigenvalue
    np.testing.assert_allclose(table["threshold"], 2 * (1 + beta) / 0.1)
    assert table["converged"].all() and (table["residual"] <= 1e-4).all()
    assert table["lambda_max_preconditioned"].isna().all()
    assert pd.read_parquet(out).equals(table)


def test_rosenbrock_sharpness_is_the_closed_form_hessians_top_eigenvalue(tmp_path):
    run = {**default_run("rosenbrock"), "epochs": 2}
    trajectory = tmp_path / "trajectory.h5"
    train(run, trajectory, device="cpu")
    table = sharpness(trajectory, tmp_path / "s.parquet", "r", batches=1, device="cpu")
    weights = stored(trajectory)["weights"][:-1]
    for (x, y), lambda_max, along in zip(weights, table["lambda_max"], table["batch_sharpness"]):
        hessian = np.array([[2 - 400 * (y - x**2) + 800 * x**2, -400 * x], [-400 * x, 200]])
        assert lambda_max == pytest.approx(np.linalg.eigvalsh(hessian)[-1], rel=1e-4)
        # Every minibatch's loss is the function itself: g^T H g / |g|^2 of its gradient.
        gradient = np.array([-2 * (1 - x) - 400 * x * (y - x**2), 200 * (y - x**2)])
        assert along == pytest.approx(gradient @ hessian @ gradient / (gradient @ gradient), 1e-4)
    np.testing.assert_allclose(table["threshold"], 2 / run["lr"])


def dense_hessian(model, loss_of_outputs, inputs, targets) -> tuple[np.ndarray, np.ndarray]:
    """(gradient, Hessian) of the loss of (inputs, targets) in the flat parameters, densely."""
    names = [name for name, _ in model.named_parameters()]
    shapes = [param.shape for param in model.parameters()]
    flat0 = torch.cat([p.detach().reshape(-1) for p in model.parameters()]).double()

    def loss(flat):
        parts, offset = {}, 0
        for name, shape in zip(names, shapes):
            size = int(np.prod(shape))
            parts[name] = flat[offset : offset + size].reshape(shape).float()
            offset += size
        outputs = torch.func.functional_call(model, parts, (inputs,))
        return loss_of_outputs(outputs.double(), targets)

    gradient = torch.func.grad(loss)(flat0)
    return gradient.numpy(), torch.autograd.functional.hessian(loss, flat0).numpy()


def test_adam_preconditioned_and_batch_sharpness_are_their_dense_computations(tmp_path):
    """An MLP of 85 parameters on digits, trained with Adam: lambda_max(P^-1 H) with P from the
    stored second moments, and each minibatch's g^T H_B g / |g|^2, equal their dense Hessians'."""
    run = tiny_run(model="mlp", width=1, depth=1, optimizer="adam", lr=0.01)
    run["checkpoint"] = {"dense_first": 2, "every": 20, "every_epochs": None}
    trajectory = tmp_path / "trajectory.h5"
    train(run, trajectory, device="cpu")
    table = sharpness(
        trajectory,
        tmp_path / "s.parquet",
        "r",
        examples=64,
        iterations=200,
        tolerance=1e-7,
        batches=2,
        device="cpu",
    )
    assert np.isnan(table["lambda_max_preconditioned"].iloc[0])  # step 0: no moments yet
    # No BatchNorm: each product takes a quarter of a shard at once, and still gives H's.
    assert table.attrs["chunk"] == 32 // 4
    np.testing.assert_allclose(table["threshold"], 2 * 1.9 / (0.1 * 0.01))
    task = load_task(run)
    model = build_model(run, task).train()
    optimizer = build_optimizer(run, model)
    indices = evaluation_indices(run["seed"], task.train_size, 64)
    with TrajectoryReader(trajectory) as traj:
        for index, row in table.iloc[1:].iterrows():
            model.load_state_dict(
                dict(zip(dict(model.named_parameters()), _unflatten(model, traj.weights(index))))
            )
            load_state_vector(optimizer, "adam", traj.optimizer_state(index))
            _, hessian = dense_hessian(model, task.loss, *task.batch(indices))
            step = int(row["step"])
            v = torch.cat(
                [optimizer.state[p]["exp_avg_sq"].reshape(-1) for p in model.parameters()]
            )
            t = float(optimizer.state[next(model.parameters())]["step"])
            p = np.sqrt(v.double().numpy() / (1 - 0.999**t)) + 1e-8
            scaled = hessian / np.sqrt(p)[:, None] / np.sqrt(p)[None, :]
            dense = np.linalg.eigvalsh(scaled)[-1]
            assert row["lambda_max_preconditioned"] == pytest.approx(dense, rel=1e-3), step
            assert row["lambda_max"] == pytest.approx(np.linalg.eigvalsh(hessian)[-1], rel=1e-3)
            along = []
            for batch, draw in sharpness_batches(run["seed"], step, task.train_size, 32, 2):
                g, h = dense_hessian(model, task.loss, *task.batch(batch, draw=draw))
                along.append(g @ h @ g / (g @ g))
            assert row["batch_sharpness"] == pytest.approx(np.mean(along), rel=1e-4), step


def test_a_product_out_of_memory_is_taken_again_with_its_saved_tensors_in_host_memory(
    monkeypatch, capsys
):
    """The first Hessian-vector product of a job that runs out of device memory is taken again,
    and every later product of the job taken, with the tensors its graphs save handed to host
    memory; H v is the same."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Linear(3, 5),
        torch.nn.BatchNorm1d(5, track_running_stats=False),  # batch statistics, couples examples
        torch.nn.Tanh(),
        torch.nn.Linear(5, 2),
    ).train()
    inputs, targets = torch.randn(12, 3), torch.randint(2, (12,))
    chunks = [(inputs[:6], targets[:6], 0.5), (inputs[6:], targets[6:], 0.5)]
    chunk_losses = []

    def loss_of(x, y):
        chunk_losses.append(len(x))
        if len(chunk_losses) == 2:  # the first product's second chunk
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return torch.nn.functional.cross_entropy(model(x).double(), y)

    packed = []

    class SavedOnHost(torch.autograd.graph.saved_tensors_hooks):  # save_on_cpu, counted
        def __init__(self, pin_memory: bool):
            super().__init__(lambda tensor: packed.append(tensor.shape) or tensor, lambda t: t)

    monkeypatch.setattr(torch.autograd.graph, "save_on_cpu", SavedOnHost)
    vector = torch.randn(sum(p.numel() for p in model.parameters()), dtype=torch.float64)
    hessian = sum(
        weight * dense_hessian(model, torch.nn.functional.cross_entropy, x, y)[1]
        for x, y, weight in chunks
    )
    offload = Offload()  # one for a job's products
    for taken in (1, 2):
        packs_before = len(packed)
        curved = hessian_product(loss_of, list(model.parameters()), chunks, offload)(vector)
        curved = curved.numpy()
        np.testing.assert_allclose(curved, hessian @ vector.numpy(), rtol=1e-4, atol=1e-6)
        assert len(chunk_losses) == 2 + 2 * taken  # the failed product taken again, whole
        assert len(packed) > packs_before  # its graphs' tensors went through the hooks
    assert capsys.readouterr().err.count("out of memory (CUDA out of memory.") == 1


def test_transformer_sharpness_runs_through_attention(tmp_path):
    """Attention's fused kernels have no double backward: the products take its plain formula."""
    run = tiny_run(task="pydoc", model="transformer", width=8, heads=2, context=16)
    run.update(batch_size=4096, checkpoint={"dense_first": 1, "every": 1000, "every_epochs": None})
    trajectory = tmp_path / "trajectory.h5"
    train(run, trajectory, device="cpu")
    table = sharpness(
        trajectory, tmp_path / "s.parquet", "lm", examples=32, iterations=3, batches=1
    )
    assert len(table) and np.isfinite(table[["lambda_max", "batch_sharpness"]].to_numpy()).all()


def _unflatten(model, flat):
    flat, offset, parts = torch.from_numpy(flat), 0, []
    for param in model.parameters():
        parts.append(flat[offset : offset + param.numel()].reshape(param.shape))
        offset += param.numel()
    return parts


def test_sharpness_figure_marks_unconverged_points_and_the_threshold():
    table = pd.DataFrame(
        {
            "progress": [0.0, 0.5],
            "lambda_max": [3.0, 5.0],
            "batch_sharpness": [2.0, 4.0],
            "lambda_max_preconditioned": [np.nan, np.nan],
            "threshold": [38.0, 38.0],
            "converged": [True, False],
        }
    )
    figure = sharpness_figure(table, "r")
    labels = figure.axes[0].get_legend_handles_labels()[1]
    assert "Lanczos not converged" in labels
    assert any("threshold" in label for label in labels)
