"""The geometry table: its columns (pandas alone), and RSI, EB, gamma recomputed independently."""

import h5py
import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from torch.func import functional_call

from nowrongturns.data import load_task
from nowrongturns.models import build_model

DESIGN_COLUMNS = (
    "run step epoch progress source sample loss dist grad_norm dot rsi eb gamma z "
    "grad_norm_wd dot_wd rsi_wd eb_wd gamma_wd"
).split()


def test_every_design_column(trained):
    _, _, geometry = trained()
    table = pd.read_parquet(geometry)
    assert list(table.columns) == DESIGN_COLUMNS
    sources = {"train_batch", "update", "sampled", "full_batch", "random_labels"}
    assert set(table["source"]) == sources
    # 7 checkpoints (the last, w*, is not a row) x (train batch, update, 3 sampled, full, shuffled)
    assert len(table) == 7 * 7
    assert (table["dist"] > 0).all()
    assert table[["grad_norm_wd", "dot_wd", "gamma_wd"]].isna().all().all()  # no weight decay


def _from_file(path, index):
    """Parameters and buffers of checkpoint `index` by name, read with h5py alone."""
    with h5py.File(path, "r") as f:
        named = {}
        for group, row in (("params", "weights"), ("buffers", "buffers")):
            flat = f["checkpoints"][row][index]
            names, shapes, offsets = (f[group][k][:] for k in ("names", "shapes", "offsets"))
            for name, shape, start in zip(names, shapes, offsets):
                size = int(np.prod(shape))
                named[name.decode()] = torch.from_numpy(flat[start : start + size].reshape(shape))
        step = f["checkpoints/step"][index]
        batch = f["steps/batch_indices"][step]
        final = f["checkpoints/weights"][-1].astype(np.float64)
    return named, step, batch, final


@pytest.mark.parametrize("changes", [{}, {"optimizer": "momentum", "weight_decay": 1e-3}])
def test_matches_plain_autograd(trained, changes):
    run, trajectory, geometry = trained(**changes)
    table = pd.read_parquet(geometry)
    task = load_task(run)
    inputs, targets = task.train.inputs, task.train.targets  # digits is held in memory
    model = build_model(run, task).train()
    param_names = [name for name, _ in model.named_parameters()]
    for index in (1, 4):
        named, step, batch, final = _from_file(trajectory, index)
        params = {name: named[name].clone().requires_grad_() for name in param_names}
        buffers = {name: named[name].clone() for name in named if name not in params}
        buffers["1.num_batches_tracked"] = buffers["1.num_batches_tracked"].long()
        buffers["4.num_batches_tracked"] = buffers["4.num_batches_tracked"].long()
        logits = functional_call(model, {**params, **buffers}, (inputs[batch],))
        loss = F.cross_entropy(logits, targets[batch])
        grads = torch.autograd.grad(loss, list(params.values()))
        grad = np.concatenate([g.reshape(-1).numpy() for g in grads]).astype(np.float64)
        weights = np.concatenate([p.detach().reshape(-1).numpy() for p in params.values()]).astype(
            np.float64
        )
        to_final = weights - final
        row = table[(table["step"] == step) & (table["source"] == "train_batch")].iloc[0]
        dist = np.linalg.norm(to_final)
        rsi = grad @ to_final / dist**2
        eb = np.linalg.norm(grad) / dist
        assert row["loss"] == pytest.approx(loss.item(), rel=1e-6)
        assert row["rsi"] == pytest.approx(rsi, rel=1e-6)
        assert row["eb"] == pytest.approx(eb, rel=1e-6)
        assert row["gamma"] == pytest.approx(rsi / eb, rel=1e-6)
        assert row["z"] == pytest.approx(rsi / eb * np.sqrt(len(weights)), rel=1e-6)
        if run["weight_decay"]:
            grad_wd = grad + run["weight_decay"] * weights
            assert row["rsi_wd"] == pytest.approx(grad_wd @ to_final / dist**2, rel=1e-6)
            assert row["eb_wd"] == pytest.approx(np.linalg.norm(grad_wd) / dist, rel=1e-6)


@pytest.mark.parametrize("optimizer", ["sgd", "momentum"])
def test_update_is_the_optimizers_step_direction(trained, optimizer):
    """sgd: d_t = G_t (the train batch's gradient); momentum: d_t = m * buffer_t + G_t."""
    run, trajectory, geometry = trained(optimizer=optimizer)
    table = pd.read_parquet(geometry).set_index(["step", "source"])
    with h5py.File(trajectory) as f:
        steps = f["checkpoints/step"][:-1]
        buffers = f["checkpoints/optimizer"][:-1]
    for index, step in enumerate(steps):
        gradient, update = table.loc[(step, "train_batch")], table.loc[(step, "update")]
        if optimizer == "sgd":
            assert update["gamma"] == pytest.approx(gradient["gamma"], rel=1e-4)
            assert update["grad_norm"] == pytest.approx(gradient["grad_norm"], rel=1e-4)
        elif index == 0:  # no momentum yet: the buffer is zero
            assert update["gamma"] == pytest.approx(gradient["gamma"], rel=1e-4)
        else:
            assert np.any(buffers[index]) and update["gamma"] != pytest.approx(gradient["gamma"])
    assert table.xs("update", level="source")[["grad_norm_wd", "gamma_wd"]].isna().all().all()
