"""Segmentation: U-Net and SegNet, [B, C, H, W] -> [B, num_classes, H, W] for any H, W."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from nowrongturns.models.classification import he_init


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
