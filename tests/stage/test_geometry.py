"""The geometry table: its columns (pandas alone), and RSI, EB, gamma recomputed independently."""

import h5py
import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from helpers.runs import stepped_directions, stored, tiny_run
from torch.func import functional_call

from nowrongturns.models import build_model
from nowrongturns.tasks.load import load_task

DOCUMENTED_COLUMNS = (
    "run step epoch progress source sample loss dist grad_norm dot rsi eb gamma z "
    "grad_norm_wd dot_wd rsi_wd eb_wd gamma_wd gamma_origin gamma_other gamma_tangent"
).split()


def test_every_design_column(trained):
    _, _, geometry = trained()
    table = pd.read_parquet(geometry)
    assert list(table.columns) == DOCUMENTED_COLUMNS
    sources = {"train_batch", "update", "sampled", "full_batch", "random_labels"}
    assert set(table["source"]) == sources
    # 7 checkpoints (the last, w*, is not a row) x (train batch, update, 3 sampled, full, shuffled)
    assert len(table) == 7 * 7
    assert (table["dist"] > 0).all()
    assert table[["grad_norm_wd", "dot_wd", "gamma_wd"]].isna().all().all()  # no weight decay
    assert table["gamma_other"].isna().all()  # no seed sibling given
    assert table["gamma_origin"].between(-1, 1).all()
    assert table["gamma_tangent"].between(-1, 1).all()  # the CNN has BatchNorm


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


def test_the_controls_are_the_cosines_of_the_step_taken(tmp_path):
    """Plain SGD, its first 6 steps checkpointed: each step is its train-batch gradient, so the
    rows' gamma_origin is cos(d_t, w_t) and gamma_other cos(d_t, w_t - w*') with w*' the final
    point of the run differing only in its seed, all from the stored weights, to 1e-6
    (absolute: the float32 rounding of two nearby stored weights bounds the recomputed step)."""
    from nowrongturns.measure.stage import measure
    from nowrongturns.train.stage import train

    early = {"checkpoint": {"dense_first": 6, "every": 10}}
    run, sibling = tmp_path / "run.h5", tmp_path / "seed=1.h5"
    train(tiny_run(**early), run, device="cpu", run_name="tiny")
    train(tiny_run(**early, seed=1), sibling, device="cpu", run_name="seed=1")
    table = measure(
        run,
        tmp_path / "geometry.parquet",
        "tiny",
        samples=1,
        full_batch=False,
        random_labels=False,
        device="cpu",
        other_final=str(sibling),
    )
    rows = table[table["source"] == "train_batch"].set_index("step")
    saved, other_final = stored(run), stored(sibling)["weights"][-1]
    weights = dict(zip(saved["checkpoint_steps"].tolist(), saved["weights"]))
    checked = 0
    for step, direction, _ in stepped_directions(run):
        for column, towards in (
            ("gamma_origin", weights[step]),
            ("gamma_other", weights[step] - other_final),
        ):
            cosine = direction @ towards / (np.linalg.norm(direction) * np.linalg.norm(towards))
            assert rows.loc[step, column] == pytest.approx(cosine, abs=1e-6), (step, column)
        checked += 1
    assert checked >= 5


def test_a_seed_sibling_of_another_architecture_is_refused(tmp_path, trained):
    from nowrongturns.measure.stage import measure
    from nowrongturns.train.stage import train

    _, trajectory, _ = trained()
    wider = tmp_path / "wider.h5"
    train(tiny_run(width=6), wider, device="cpu", run_name="wider")
    with pytest.raises(ValueError, match=r"wider\.h5: \d+ parameters, not the \d+"):
        measure(
            trajectory,
            tmp_path / "g.parquet",
            "tiny",
            samples=1,
            device="cpu",
            other_final=str(wider),
        )
    assert not (tmp_path / "g.parquet").exists()
