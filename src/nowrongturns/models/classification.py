"""Classification models: multilayer perceptron, plain CNN, CIFAR ResNets (He et al. 2016, 4.2),
and ResNet-18/50/152 at any width: the reference code's `resnet18_{1,2,3}_cifar` and ImageNet
`resnet{18,50,152}_{05,1,2,3}`.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


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


class WideResNet(nn.Module):
    """torchvision's ResNet (v1.5: the stride on a bottleneck's 3x3 conv; 1x1-conv + BatchNorm
    projection shortcuts where the shape changes) with every stage's channels, the stem's too,
    times `width_multiplier`, as the reference code widens it: int(64 w), int(128 w), int(256
    w), int(512 w) planes per stage. `cifar_stem`: a 3x3 stride-1 conv and no max-pool (the
    kuangliu form of the reference's CIFAR ResNet-18), else the 7x7 stride-2 conv and 3x3 max-pool.
    Parameter names are torchvision's (conv1, bn1, layer1..4, fc)."""

    def __init__(self, block, layers, in_channels, num_classes, width_multiplier, cifar_stem):
        super().__init__()
        self.inplanes = int(64 * width_multiplier)
        if cifar_stem:
            self.conv1 = nn.Conv2d(in_channels, self.inplanes, 3, stride=1, padding=1, bias=False)
            self.maxpool = nn.Identity()
        else:
            self.conv1 = nn.Conv2d(in_channels, self.inplanes, 7, stride=2, padding=3, bias=False)
            self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        self.bn1 = nn.BatchNorm2d(self.inplanes)
        self.relu = nn.ReLU(inplace=True)
        stages = [
            self._make_layer(block, int(64 * 2**stage * width_multiplier), blocks, stride)
            for stage, (blocks, stride) in enumerate(zip(layers, [1, 2, 2, 2]))
        ]
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        # AdaptiveAvgPool2d(1) runs as a mean, deterministic on CUDA too; on a CIFAR image it is
        # the reference's avg_pool2d(out, 4) of the last 4x4 map.
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(self.inplanes, num_classes)

    def _make_layer(self, block, planes: int, blocks: int, stride: int) -> nn.Sequential:
        downsample = None
        if stride != 1 or self.inplanes != planes * block.expansion:
            downsample = nn.Sequential(
                nn.Conv2d(self.inplanes, planes * block.expansion, 1, stride=stride, bias=False),
                nn.BatchNorm2d(planes * block.expansion),
            )
        layers = [block(self.inplanes, planes, stride, downsample)]
        self.inplanes = planes * block.expansion
        layers += [block(self.inplanes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


def wide_resnet(block, layers, input_shape, num_classes: int, width_multiplier: float):
    """A WideResNet taking `input_shape` images. Inputs of at most 64 pixels a side get the CIFAR
    stem and PyTorch's default init, as the reference's CIFAR ResNet-18; larger ones the ImageNet
    stem and torchvision's He init of every convolution, as the reference's ImageNet ResNets."""
    cifar_stem = min(input_shape[1:]) <= 64
    model = WideResNet(block, layers, input_shape[0], num_classes, width_multiplier, cifar_stem)
    return model if cifar_stem else he_init(model)


# torchvision's blocks are imported where a ResNet-18/50/152 is built: importing torchvision
# costs every job that builds no such model (segments, measure of a CNN) about 3 s more.


def resnet18(input_shape: tuple[int, ...], num_classes: int, width_multiplier: float) -> nn.Module:
    """ResNet-18 (He et al. 2016, Table 1): basic blocks [2, 2, 2, 2]. On CIFAR at width
    multiplier 2 it is the reference's resnet18_2_cifar, 44,662,922 parameters."""
    from torchvision.models.resnet import BasicBlock

    return wide_resnet(BasicBlock, [2, 2, 2, 2], input_shape, num_classes, width_multiplier)


def resnet50(input_shape: tuple[int, ...], num_classes: int, width_multiplier: float) -> nn.Module:
    """ResNet-50 (He et al. 2016, Table 1): bottleneck blocks [3, 4, 6, 3]."""
    from torchvision.models.resnet import Bottleneck

    return wide_resnet(Bottleneck, [3, 4, 6, 3], input_shape, num_classes, width_multiplier)


def resnet152(input_shape: tuple[int, ...], num_classes: int, width_multiplier: float) -> nn.Module:
    """ResNet-152 (He et al. 2016, Table 1): bottleneck blocks [3, 8, 36, 3]."""
    from torchvision.models.resnet import Bottleneck

    return wide_resnet(Bottleneck, [3, 8, 36, 3], input_shape, num_classes, width_multiplier)
