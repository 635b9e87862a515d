"""Models, built from a run config and the task they learn.

`build_model(run, task)` picks the model named by the run key `model` and sizes it with the run
keys each model reads (`width`, `depth`, `heads`; see `MODELS`). Every model has no dropout and
runs deterministically, including under `torch.use_deterministic_algorithms(True)`, which training
sets: the measurement stage needs a gradient to be a pure function of weights and minibatch.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
import torchvision
from torch import nn


def resolve_device(name: str) -> torch.device:
    """`auto` picks CUDA where present, else the CPU."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device 'cuda' was asked for, but torch sees no CUDA device")
    return torch.device(name)


# Classification: multilayer perceptron, plain CNN, ResNets.


def mlp(input_shape: tuple[int, ...], num_classes: int, width: int, depth: int) -> nn.Module:
    """A multilayer perceptron: `depth` hidden ReLU layers of `width` units, then a linear head."""
    sizes = [math.prod(input_shape)] + [width] * depth
    hidden = []
    for fan_in, fan_out in zip(sizes, sizes[1:]):
        hidden += [nn.Linear(fan_in, fan_out), nn.ReLU()]
    return nn.Sequential(nn.Flatten(), *hidden, nn.Linear(sizes[-1], num_classes))


def cnn(input_shape: tuple[int, ...], num_classes: int, width: int, depth: int) -> nn.Module:
    """A plain CNN: `depth` 3x3 conv + BatchNorm + ReLU blocks of width, 2*width, 4*width, ...
    channels, one 2x2 max-pool and a linear head.

    depth=2 is the project's original CNN, layer for layer (results and the trajectory's parameter
    names depend on it), so the convolutions keep their biases and PyTorch's default init.
    """
    channels, height, breadth = input_shape
    blocks = []
    for block in range(depth):
        out_channels = width * 2**block
        conv = nn.Conv2d(channels, out_channels, 3, padding=1)
        blocks += [conv, nn.BatchNorm2d(out_channels), nn.ReLU()]
        channels = out_channels
    pooled_size = channels * (height // 2) * (breadth // 2)
    return nn.Sequential(
        *blocks, nn.MaxPool2d(2), nn.Flatten(), nn.Linear(pooled_size, num_classes)
    )


def he_init(model: nn.Module) -> nn.Module:
    """He et al. 2015 init of every convolution, as the ResNet, U-Net and SegNet papers use
    (torchvision's fan-out variant); BatchNorm keeps weight 1, bias 0."""
    for module in model.modules():
        if isinstance(module, nn.Conv2d | nn.ConvTranspose2d):
            nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
    return model


class BasicBlock(nn.Module):
    """Two 3x3 conv + BatchNorm layers, a shortcut, ReLU after the sum (He et al. 2016, Fig. 2)."""

    def __init__(self, in_channels: int, out_channels: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.stride, self.new_channels = stride, out_channels - in_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        residual = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
        return F.relu(residual + self.shortcut(x))

    def shortcut(self, x: torch.Tensor) -> torch.Tensor:
        # Option A of section 4.2 (the paper's CIFAR choice): subsample, zero-pad the new
        # channels; no parameters. x[::2] keeps ceil(H/2) rows, as the stride-2 conv does.
        subsampled = x[:, :, :: self.stride, :: self.stride]
        return F.pad(subsampled, (0, 0, 0, 0, 0, self.new_channels))


def resnet(input_shape: tuple[int, ...], num_classes: int, width: int, depth: int) -> nn.Module:
    """CIFAR ResNet (He et al. 2016, "Deep residual learning for image recognition", 4.2).

    A 3x3 stem of `width` channels, three stages of `depth` basic blocks (the paper's n) with
    width, 2*width, 4*width channels (stride 2 entering stages 2 and 3), global average pool,
    linear head: 6*depth + 2 layers, so depth=3, width=16 is ResNet-20 (0.27M parameters).
    """
    channels = input_shape[0]
    stem = [nn.Conv2d(channels, width, 3, padding=1, bias=False), nn.BatchNorm2d(width), nn.ReLU()]
    blocks, channels = [], width
    for stage in range(3):
        out_channels = width * 2**stage
        for index in range(depth):
            stride = 2 if stage > 0 and index == 0 else 1
            blocks.append(BasicBlock(channels, out_channels, stride))
            channels = out_channels
    # AdaptiveAvgPool2d(1) runs as a mean, deterministic on CUDA too.
    head = [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(channels, num_classes)]
    return he_init(nn.Sequential(*stem, *blocks, *head))


def torchvision_resnet(
    constructor: Callable[..., torchvision.models.ResNet],
    input_shape: tuple[int, ...],
    num_classes: int,
    **options,
) -> nn.Module:
    """A torchvision ResNet taking `input_shape` images. Inputs of at most 64 pixels a side get
    the CIFAR stem (3x3 stride-1 conv, no max-pool), else 32x32 images would reach the first
    stage as 8x8; larger inputs keep the ImageNet 7x7 stride-2 stem."""
    channels, height, breadth = input_shape
    model = constructor(weights=None, num_classes=num_classes, **options)
    if min(height, breadth) <= 64:
        model.conv1 = nn.Conv2d(channels, 64, 3, stride=1, padding=1, bias=False)
        model.maxpool = nn.Identity()
    else:
        model.conv1 = nn.Conv2d(channels, 64, 7, stride=2, padding=3, bias=False)
    nn.init.kaiming_normal_(model.conv1.weight, mode="fan_out", nonlinearity="relu")
    return model


def resnet18(input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    """ResNet-18 (He et al. 2016, Table 1), torchvision's, with the CIFAR stem on small inputs.
    Ignores `width` and `depth`: the name fixes the layers, and torchvision's basic blocks allow
    no other width."""
    return torchvision_resnet(torchvision.models.resnet18, input_shape, num_classes)


def resnet50(input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    """ResNet-50 (He et al. 2016, Table 1), torchvision's, with the CIFAR stem on small inputs.
    Ignores `width` and `depth`, as resnet18 does: the name fixes the network."""
    return torchvision_resnet(torchvision.models.resnet50, input_shape, num_classes)


# Language: a decoder-only Transformer.


class TransformerLM(nn.Module):
    """Token and learned position embeddings, pre-norm causal self-attention layers, a final
    LayerNorm and a linear head to the vocabulary: [B, T] token ids -> [B, T, vocabulary]."""

    def __init__(self, context: int, vocabulary: int, width: int, depth: int, heads: int):
        super().__init__()
        self.tokens = nn.Embedding(vocabulary, width)
        self.positions = nn.Embedding(context, width)
        # Built one by one: nn.TransformerEncoder deep-copies one layer, so every layer would
        # start from the same weights.
        self.layers = nn.ModuleList(
            nn.TransformerEncoderLayer(
                width, heads, 4 * width, dropout=0.0, batch_first=True, norm_first=True
            )
            for _ in range(depth)
        )
        self.norm = nn.LayerNorm(width)
        self.head = nn.Linear(width, vocabulary)
        # GPT-2's N(0, 0.02) rather than PyTorch's N(0, 1): the residual stream starts at the
        # scale the layers write into it.
        nn.init.normal_(self.tokens.weight, std=0.02)
        nn.init.normal_(self.positions.weight, std=0.02)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        length = tokens.shape[1]
        positions = torch.arange(length, device=tokens.device)
        hidden = self.tokens(tokens) + self.positions(positions)
        mask = nn.Transformer.generate_square_subsequent_mask(length, device=tokens.device)
        for layer in self.layers:
            hidden = layer(hidden, src_mask=mask, is_causal=True)
        return self.head(self.norm(hidden))


def transformer(
    input_shape: tuple[int, ...], num_classes: int, width: int, depth: int, heads: int
) -> nn.Module:
    """Decoder-only Transformer language model (Vaswani et al. 2017, as in GPT-2: Radford et al.
    2019, pre-norm). `width` is d_model (feed-forward 4*width), `depth` the number of layers,
    `heads` the attention heads; the context is the task's input length, the vocabulary its
    number of classes."""
    if width % heads:
        raise ValueError(
            f"transformer: run key width ({width}) must be divisible by heads ({heads})"
        )
    return TransformerLM(input_shape[0], num_classes, width, depth, heads)


# Segmentation: U-Net and SegNet, [B, C, H, W] -> [B, num_classes, H, W] for any H, W.


def conv_bn_relu_twice(in_channels: int, out_channels: int) -> nn.Sequential:
    """Two padded 3x3 conv + BatchNorm + ReLU layers: the unit of U-Net and SegNet."""
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(),
        nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(),
    )


def check_halvings(model: str, input_shape: tuple[int, ...], depth: int) -> None:
    """Refuse a depth that would halve the inputs below one pixel."""
    side = min(input_shape[1:])
    if side < 2**depth:
        raise ValueError(
            f"{model}: run key depth ({depth}) halves {side}-pixel inputs {depth} times, below "
            f"one pixel; use depth <= {int(math.log2(side))}"
        )


class UpLevel(nn.Module):
    """A U-Net decoder level: 2x2 up-convolution halving the channels, concatenation with the
    encoder's features of the same level, two conv + BatchNorm + ReLU layers."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        # A transposed conv, as the paper's up-convolution; bilinear upsampling has no
        # deterministic CUDA backward.
        self.upsample = nn.ConvTranspose2d(in_channels, out_channels, 2, stride=2)
        self.convs = conv_bn_relu_twice(2 * out_channels, out_channels)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        upsampled = self.upsample(x)
        # An odd side lost its last row to the floor of max-pooling; pad it back with zeros.
        missing_rows, missing_cols = (s - u for s, u in zip(skip.shape[-2:], upsampled.shape[-2:]))
        upsampled = F.pad(upsampled, (0, missing_cols, 0, missing_rows))
        return self.convs(torch.cat([skip, upsampled], dim=1))


class UNet(nn.Module):
    """U-Net encoder, bottleneck, decoder with skip connections, 1x1 classifier."""

    def __init__(self, in_channels: int, num_classes: int, width: int, depth: int):
        super().__init__()
        channels = [width * 2**level for level in range(depth + 1)]
        self.down = nn.ModuleList(
            conv_bn_relu_twice(fan_in, fan_out)
            for fan_in, fan_out in zip([in_channels] + channels[:-2], channels[:-1])
        )
        self.bottom = conv_bn_relu_twice(channels[-2], channels[-1])
        self.up = nn.ModuleList(
            UpLevel(channels[level + 1], channels[level]) for level in reversed(range(depth))
        )
        self.classify = nn.Conv2d(width, num_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for level in self.down:
            x = level(x)
            skips.append(x)
            x = F.max_pool2d(x, 2)
        x = self.bottom(x)
        for level, skip in zip(self.up, reversed(skips)):
            x = level(x, skip)
        return self.classify(x)


def unet(input_shape: tuple[int, ...], num_classes: int, width: int, depth: int) -> nn.Module:
    """U-Net (Ronneberger et al. 2015) with BatchNorm and padded convolutions, so the output has
    the input's height and width (the paper's unpadded ones shrink it). `depth` is the number of
    2x2 max-pools (the paper's 4), `width` the first level's channels (the paper's 64), doubling
    per level down to 2**depth * width at the bottom."""
    check_halvings("unet", input_shape, depth)
    return he_init(UNet(input_shape[0], num_classes, width, depth))


def max_unpool(values: torch.Tensor, indices: torch.Tensor, size: torch.Size) -> torch.Tensor:
    """F.max_unpool2d by scatter: put each value back where max-pooling found it, zeros elsewhere.
    torch's max_unpool2d has no deterministic implementation and raises under training's
    torch.use_deterministic_algorithms(True); scatter and its gather backward are deterministic."""
    batch, channels = values.shape[:2]
    unpooled = values.new_zeros(batch, channels, size[0] * size[1])
    unpooled = unpooled.scatter(2, indices.flatten(2), values.flatten(2))
    return unpooled.view(batch, channels, *size)


class SegNet(nn.Module):
    """SegNet encoder stages that max-pool and remember where the maxima were, decoder stages
    that unpool to those places, 1x1 classifier."""

    def __init__(self, in_channels: int, num_classes: int, width: int, depth: int):
        super().__init__()
        channels = [width * 2**stage for stage in range(depth)]
        self.encoder = nn.ModuleList(
            conv_bn_relu_twice(fan_in, fan_out)
            for fan_in, fan_out in zip([in_channels] + channels[:-1], channels)
        )
        # Each decoder stage mirrors an encoder stage, back to its input channels (width last).
        self.decoder = nn.ModuleList(
            conv_bn_relu_twice(fan_in, fan_out)
            for fan_in, fan_out in zip(reversed(channels), reversed([width] + channels[:-1]))
        )
        self.classify = nn.Conv2d(width, num_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = []
        for stage in self.encoder:
            x = stage(x)
            size = x.shape[-2:]  # unpooling restores an odd side that pooling floored
            x, indices = F.max_pool2d(x, 2, return_indices=True)
            pooled.append((indices, size))
        for stage, (indices, size) in zip(self.decoder, reversed(pooled)):
            x = stage(max_unpool(x, indices, size))
        return self.classify(x)


def segnet(input_shape: tuple[int, ...], num_classes: int, width: int, depth: int) -> nn.Module:
    """SegNet (Badrinarayanan et al. 2017): `depth` encoder stages (the paper's VGG-16 has 5) of
    two conv + BatchNorm + ReLU layers and a 2x2 max-pool with indices, width, 2*width, 4*width,
    ... channels (the paper's 64, 128, 256, ...); the decoder mirrors them, unpooling with the
    stored indices, so the output has the input's height and width."""
    check_halvings("segnet", input_shape, depth)
    return he_init(SegNet(input_shape[0], num_classes, width, depth))


# Synthetic tasks: the model is the parameter vector w itself.


def linear(input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    """Least squares' model x -> x . w, one weight vector w of the task's input size d and no
    bias: [B, d] -> [B, 1] (num_classes is 1). PyTorch's default init, w_j ~ U(-1/sqrt(d),
    1/sqrt(d)), from the run seed."""
    return nn.Linear(input_shape[0], num_classes, bias=False)


POINT_START = (-1.5, 2.0)  # across Rosenbrock's valley from where its first steps fall
POINT_JITTER = 0.01  # the run seed moves the start by N(0, POINT_JITTER^2 I)


class Point(nn.Module):
    """A point w in R^n as the model: every example's output is w itself, [B, ...] -> [B, n]."""

    def __init__(self, start: torch.Tensor):
        super().__init__()
        self.position = nn.Parameter(start)

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        return self.position.expand(len(inputs), -1)


def point(input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    """The point w of a 2-D objective, started at POINT_START plus N(0, POINT_JITTER^2 I) drawn
    from the run seed (so seeds differ slightly), never from a default init."""
    start = torch.tensor(POINT_START) + POINT_JITTER * torch.randn(len(POINT_START))
    return Point(start)


@dataclass(frozen=True)
class ModelSpec:
    build: Callable[..., nn.Module]  # (input_shape, num_classes, **run keys) -> model
    kind: str  # the kind of task it predicts for (data.KINDS)
    keys: tuple[str, ...] = ("width", "depth")  # the run keys it is sized by


MODELS = {
    "mlp": ModelSpec(mlp, "classification"),
    "cnn": ModelSpec(cnn, "classification"),
    "resnet": ModelSpec(resnet, "classification"),
    "resnet18": ModelSpec(resnet18, "classification", keys=()),
    "resnet50": ModelSpec(resnet50, "classification", keys=()),
    "transformer": ModelSpec(transformer, "language", keys=("width", "depth", "heads")),
    "unet": ModelSpec(unet, "segmentation"),
    "segnet": ModelSpec(segnet, "segmentation"),
    "linear": ModelSpec(linear, "regression", keys=()),
    "point": ModelSpec(point, "objective", keys=()),
}


def build_model(run: dict, task) -> nn.Module:
    """The model a run config names, shaped for the task's inputs and outputs."""
    name = run["model"]
    if name not in MODELS:
        raise ValueError(f"model {name!r} is unknown; known models: {', '.join(MODELS)}")
    spec = MODELS[name]
    if task.kind != spec.kind:
        raise ValueError(f"model {name!r} is for {spec.kind} tasks, not {task.kind} tasks")
    sizes = {key: run[key] for key in spec.keys}
    return spec.build(tuple(task.input_shape), task.num_classes, **sizes)
