"""gamma per layer (the layers table) and gamma_tangent, against the whole network's values and
a direct computation from the stored weights."""

import numpy as np
import pandas as pd
import pytest
import torch
from helpers.runs import stepped_directions

from nowrongturns.measure.layers import scale_invariant_weights
from nowrongturns.measure.stage import measure
from nowrongturns.models import build_model
from nowrongturns.tasks.load import load_task


@pytest.fixture(scope="module")
def measured_layers(trained, tmp_path_factory):
    run, trajectory, _ = trained()
    folder = tmp_path_factory.mktemp("layers")
    geometry = measure(
        trajectory,
        folder / "geometry.parquet",
        "tiny",
        samples=2,
        full_batch=True,
        random_labels=True,
        device="cpu",
        layers=folder / "layers.parquet",
    )
    return run, trajectory, geometry, pd.read_parquet(folder / "layers.parquet")


def test_one_row_per_gradient_and_parameter_tensor(measured_layers):
    run, _, geometry, layers = measured_layers
    names = [name for name, _ in build_model(run, load_task(run)).named_parameters()]
    assert {"step", "source", "sample", "layer", "dist", "grad_norm", "dot", "gamma"} <= set(
        layers.columns
    )
    assert len(layers) == len(geometry) * len(names)
    assert list(layers["layer"].iloc[: len(names)]) == names
    assert layers["gamma"].dropna().between(-1, 1).all()


def test_per_layer_dots_and_squares_add_up_to_the_whole_network(measured_layers):
    _, _, geometry, layers = measured_layers
    summed = layers.groupby(["step", "source", "sample"], sort=False).agg(
        dot=("dot", "sum"),
        grad_square=("grad_norm", lambda g: (g**2).sum()),
        dist_square=("dist", lambda d: (d**2).sum()),
    )
    whole = geometry.set_index(["step", "source", "sample"]).loc[summed.index]
    np.testing.assert_allclose(summed["dot"], whole["dot"], rtol=1e-9)
    np.testing.assert_allclose(summed["grad_square"], whole["grad_norm"] ** 2, rtol=1e-9)
    np.testing.assert_allclose(summed["dist_square"], whole["dist"] ** 2, rtol=1e-9)


def test_the_scale_invariant_weights_are_those_before_a_batchnorm(trained):
    run, _, _ = trained()
    task = load_task(run)
    model = build_model(run, task)
    inputs, _ = task.batch(torch.arange(2))
    # The CNN: conv 0, BatchNorm 1, ReLU 2, conv 3, BatchNorm 4, ..., linear head.
    assert scale_invariant_weights(model, inputs) == ["0.weight", "3.weight"]
    assert model.training  # left as it was
    mlp = build_model({**run, "model": "mlp"}, task)
    assert scale_invariant_weights(mlp, inputs) == []


def test_gamma_tangent_equals_its_direct_computation(measured_layers):
    """cos(d_t, P(w_t - w*)), P removing from each conv channel's weights before a BatchNorm
    the part along those weights, from the stored weights alone (d_t the step SGD took)."""
    run, trajectory, geometry, _ = measured_layers
    model = build_model(run, load_task(run))
    offsets, invariant, offset = {}, ("0.weight", "3.weight"), 0
    for name, param in model.named_parameters():
        offsets[name] = (offset, param.shape[0], param.numel() // param.shape[0])
        offset += param.numel()
    rows = geometry[geometry["source"] == "update"].set_index("step")
    checked = 0
    for step, direction, to_final in stepped_directions(trajectory):
        weights = to_final + _final(trajectory)
        tangent = to_final.copy()
        for name in invariant:
            start, channels, size = offsets[name]
            d = to_final[start : start + channels * size].reshape(channels, size)
            w = weights[start : start + channels * size].reshape(channels, size)
            along = (d * w).sum(1, keepdims=True) / (w * w).sum(1, keepdims=True)
            tangent[start : start + channels * size] = (d - along * w).ravel()
        expected = direction @ tangent / (np.linalg.norm(direction) * np.linalg.norm(tangent))
        assert rows.loc[step, "gamma_tangent"] == pytest.approx(expected, rel=1e-4, abs=1e-6)
        checked += 1
    assert checked >= 2
    assert geometry["gamma_tangent"].notna().all()


def test_gamma_tangent_is_nan_without_batchnorm(trained):
    _, _, geometry = trained(model="mlp")
    table = pd.read_parquet(geometry)
    assert table["gamma_tangent"].isna().all() and table["gamma"].notna().all()


def _final(trajectory) -> np.ndarray:
    import h5py

    with h5py.File(trajectory) as f:
        return f["checkpoints/weights"][-1].astype(np.float64)
