"""Every model: output shape, finite and repeatable gradients, seeded init, task-kind checks."""

from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
import torchvision
from torch import nn

from nowrongturns.models import MODELS, build_model, max_unpool


def fake_task(kind: str, num_classes: int, input_shape: tuple[int, ...]) -> SimpleNamespace:
    return SimpleNamespace(kind=kind, num_classes=num_classes, input_shape=input_shape)


DIGITS = fake_task("classification", 10, (1, 8, 8))
# Odd sides (9, 11, 7 after a halving) exercise the pad/crop and unpooling paths.
MASKS = fake_task("segmentation", 3, (2, 9, 11))
TEXT = fake_task("language", 11, (6,))
REGRESSION = fake_task("regression", 1, (5,))
OBJECTIVE = fake_task("objective", 2, (0,))  # placeholder examples: empty inputs

# Tiny CPU settings per model: (task, run keys, input shape of a batch of 2).
CASES = {
    "mlp": (DIGITS, {"width": 8, "depth": 3}),
    "cnn": (DIGITS, {"width": 4, "depth": 3}),
    "resnet": (DIGITS, {"width": 4, "depth": 1}),
    "resnet18": (fake_task("classification", 10, (1, 16, 16)), {"width_multiplier": 0.25}),
    "resnet50": (fake_task("classification", 10, (3, 32, 32)), {"width_multiplier": 0.125}),
    "resnet152": (fake_task("classification", 10, (3, 16, 16)), {"width_multiplier": 0.0625}),
    "transformer": (TEXT, {"width": 8, "depth": 2, "heads": 2}),
    "unet": (MASKS, {"width": 4, "depth": 2}),
    "segnet": (MASKS, {"width": 4, "depth": 3}),
    "linear": (REGRESSION, {}),
    "point": (OBJECTIVE, {}),
}
WRONG_KIND = {
    "classification": TEXT,
    "segmentation": DIGITS,
    "language": MASKS,
    "regression": OBJECTIVE,
    "objective": REGRESSION,
}


def run_config(name: str) -> dict:
    return {
        "model": name,
        "width": 1,
        "depth": 1,
        "heads": 1,
        "width_multiplier": 1,
        **CASES[name][1],
    }


def batch(task, size: int = 2) -> tuple[torch.Tensor, torch.Tensor]:
    """Random (inputs, targets) of `size` examples, shaped as the task's kind needs."""
    generator = torch.Generator().manual_seed(1)
    if task.kind == "language":
        tokens = torch.randint(
            task.num_classes, (size, task.input_shape[0] + 1), generator=generator
        )
        return tokens[:, :-1], tokens[:, 1:]
    inputs = torch.randn(size, *task.input_shape, generator=generator)
    target_shape = (size, *task.input_shape[1:]) if task.kind == "segmentation" else (size,)
    return inputs, torch.randint(task.num_classes, target_shape, generator=generator)


def gradients(model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor) -> list:
    model.zero_grad()
    logits = model(inputs)
    if logits.dim() == 3:  # language: [B, T, V] -> [B, V, T]
        logits = logits.movedim(-1, 1)
    F.cross_entropy(logits, targets).backward()
    return [p.grad.clone() for p in model.parameters()]


@pytest.fixture
def deterministic():
    """Training's setting, under which torch raises on ops with no deterministic algorithm."""
    before = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True)
    yield
    torch.use_deterministic_algorithms(before)


def test_every_model_is_tested():
    assert set(CASES) == set(MODELS)


@pytest.mark.parametrize("name", CASES)
def test_shape_and_repeatable_finite_gradients(name, deterministic):
    task, _ = CASES[name]
    model = build_model(run_config(name), task).train()
    inputs, targets = batch(task)
    expected = {
        "classification": (2, task.num_classes),
        "segmentation": (2, task.num_classes, *task.input_shape[1:]),
        "language": (2, task.input_shape[0], task.num_classes),
        "regression": (2, task.num_classes),
        "objective": (2, task.num_classes),  # the point w, once per example
    }[task.kind]
    assert model(inputs).shape == expected
    first, second = gradients(model, inputs, targets), gradients(model, inputs, targets)
    for (param_name, _), grad, again in zip(model.named_parameters(), first, second):
        assert torch.isfinite(grad).all(), param_name
        assert torch.equal(grad, again), param_name  # a pure function of weights and minibatch
    assert all(m.p == 0 for m in model.modules() if isinstance(m, nn.modules.dropout._DropoutNd))
    assert all(m.dropout == 0 for m in model.modules() if isinstance(m, nn.MultiheadAttention))


@pytest.mark.parametrize("name", CASES)
def test_same_seed_same_model(name):
    task, _ = CASES[name]

    def state(seed: int) -> dict:
        torch.manual_seed(seed)
        return build_model(run_config(name), task).state_dict()

    first, again, other = state(0), state(0), state(1)
    assert list(first) == list(again)
    assert all(torch.equal(first[key], again[key]) for key in first)
    assert any(not torch.equal(first[key], other[key]) for key in first)


@pytest.mark.parametrize("name", CASES)
def test_wrong_task_kind_is_refused(name):
    task = WRONG_KIND[CASES[name][0].kind]
    with pytest.raises(ValueError, match=f"model '{name}' is for .* not {task.kind} tasks"):
        build_model(run_config(name), task)


def test_unknown_model_is_refused():
    with pytest.raises(ValueError, match="model 'vgg' is unknown; known models: mlp, cnn"):
        build_model({"model": "vgg", "width": 4, "depth": 2}, DIGITS)


def test_cnn_depth_2_is_the_original_cnn():
    """Layer for layer and init for init: trajectories store parameters by these names."""
    width = 16
    torch.manual_seed(0)
    original = nn.Sequential(
        nn.Conv2d(1, width, 3, padding=1),
        nn.BatchNorm2d(width),
        nn.ReLU(),
        nn.Conv2d(width, 2 * width, 3, padding=1),
        nn.BatchNorm2d(2 * width),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(2 * width * 4 * 4, 10),
    )
    torch.manual_seed(0)
    model = build_model({"model": "cnn", "width": width, "depth": 2}, DIGITS)
    assert repr(model) == repr(original)
    expected = original.state_dict()
    assert list(model.state_dict()) == list(expected)
    assert all(torch.equal(value, expected[key]) for key, value in model.state_dict().items())


def test_resnet20_has_the_papers_parameter_count():
    """He et al. 2016, Table 6: ResNet-20 has 0.27M parameters (option A shortcuts)."""
    cifar = fake_task("classification", 10, (3, 32, 32))
    model = build_model({"model": "resnet", "width": 16, "depth": 3}, cifar)
    assert sum(p.numel() for p in model.parameters()) == 269_722


@pytest.mark.parametrize(
    "input_shape, kernel, pooled", [((1, 32, 32), 3, False), ((1, 65, 80), 7, True)]
)
def test_resnet_stem_fits_the_input(input_shape, kernel, pooled):
    task = fake_task("classification", 10, input_shape)
    model = build_model({"model": "resnet18", "width_multiplier": 1}, task)
    assert model.conv1.in_channels == 1
    assert model.conv1.kernel_size == (kernel, kernel)
    assert isinstance(model.maxpool, nn.MaxPool2d) == pooled


CIFAR = fake_task("classification", 10, (3, 32, 32))
IMAGENET = fake_task("classification", 1000, (3, 224, 224))


@pytest.mark.parametrize(
    ("run", "task", "count"),
    [
        # The reference's model-type-cifar.sh: resnet18_2_cifar and medium_mlp (4096 x 3).
        ({"model": "resnet18", "width_multiplier": 2}, CIFAR, 44_662_922),
        ({"model": "mlp", "width": 4096, "depth": 3}, CIFAR, 46_190_602),
        ({"model": "resnet18", "width_multiplier": 1}, CIFAR, 11_173_962),  # kuangliu's
    ],
)
def test_parameter_counts_are_the_references(run, task, count):
    assert sum(p.numel() for p in build_model(run, task).parameters()) == count


@pytest.mark.parametrize("name", ["resnet18", "resnet50", "resnet152"])
def test_imagenet_resnets_at_width_1_are_torchvisions(name):
    """Layer for layer, by parameter name and shape; the reference's ImageNet ResNets are
    torchvision's, widened."""
    ours = build_model({"model": name, "width_multiplier": 1}, IMAGENET)
    theirs = getattr(torchvision.models, name)(weights=None)
    shapes = [(n, p.shape) for n, p in ours.named_parameters()]
    assert shapes == [(n, p.shape) for n, p in theirs.named_parameters()]


def test_width_multiplier_widens_every_stage_and_the_stem():
    """resnet152_05 of the reference: a 32-channel stem and 32, 64, 128, 256 planes."""
    model = build_model({"model": "resnet152", "width_multiplier": 0.5}, IMAGENET)
    assert model.conv1.out_channels == 32
    planes = [
        stage[0].conv1.out_channels
        for stage in (model.layer1, model.layer2, model.layer3, model.layer4)
    ]
    assert planes == [32, 64, 128, 256]
    assert model.fc.in_features == 256 * 4


def test_transformer_is_causal():
    model = build_model(run_config("transformer"), TEXT).train()
    tokens, _ = batch(TEXT)
    changed = tokens.clone()
    changed[:, -1] = (changed[:, -1] + 1) % TEXT.num_classes
    logits, changed_logits = model(tokens), model(changed)
    assert torch.equal(logits[:, :-1], changed_logits[:, :-1])
    assert not torch.equal(logits[:, -1], changed_logits[:, -1])


def test_transformer_layers_start_different():
    model = build_model(run_config("transformer"), TEXT)
    first, second = (layer.linear1.weight for layer in model.layers)
    assert not torch.equal(first, second)


def test_transformer_heads_must_divide_width():
    run = {"model": "transformer", "width": 10, "depth": 1, "heads": 4}
    with pytest.raises(ValueError, match=r"width \(10\) must be divisible by heads \(4\)"):
        build_model(run, TEXT)


@pytest.mark.parametrize("name", ["unet", "segnet"])
def test_too_deep_for_the_input_is_refused(name):
    with pytest.raises(ValueError, match=rf"{name}: run key depth \(4\) .* use depth <= 3"):
        build_model({"model": name, "width": 2, "depth": 4}, MASKS)


@pytest.mark.parametrize("height, width", [(28, 28), (9, 11), (7, 8)])
def test_unet_and_segnet_keep_the_input_size(height, width):
    task = fake_task("segmentation", 2, (1, height, width))
    inputs, _ = batch(task)
    for name in ("unet", "segnet"):
        model = build_model({"model": name, "width": 2, "depth": 2}, task)
        assert model(inputs).shape == (2, 2, height, width), name


def test_max_unpool_matches_torch():
    values = torch.randn(2, 3, 9, 11, generator=torch.Generator().manual_seed(0))
    pooled, indices = F.max_pool2d(values, 2, return_indices=True)
    before = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(False)  # torch's own unpooling refuses deterministic mode
    try:
        expected = F.max_unpool2d(pooled, indices, 2, output_size=(9, 11))
    finally:
        torch.use_deterministic_algorithms(before)
    assert torch.equal(max_unpool(pooled, indices, values.shape[-2:]), expected)
