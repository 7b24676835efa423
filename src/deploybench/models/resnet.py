"""ResNet50-v1.5 (the MLPerf image-classification model) and smaller variants.

v1.5 differs from v1 in putting the stride-2 on the 3x3 convolution of the bottleneck, not
on the first 1x1, which is what MLPerf and torchvision use.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class ResNetConfig:
    layers: tuple[int, int, int, int]
    width: int  # channels of the stem; stages use width, 2w, 4w, 8w (x4 expansion)
    num_classes: int = 1000


RESNET_SIZES: dict[str, ResNetConfig] = {
    "full": ResNetConfig(layers=(3, 4, 6, 3), width=64),  # ResNet50-v1.5, 25.6M params
    "small": ResNetConfig(layers=(2, 2, 2, 2), width=32),
    "tiny": ResNetConfig(layers=(1, 1, 1, 1), width=8),
}


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, in_ch: int, width: int, stride: int) -> None:
        super().__init__()
        out_ch = width * self.expansion
        self.conv1 = nn.Conv2d(in_ch, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, out_ch, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_ch)
        self.relu = nn.ReLU(inplace=True)
        self.downsample: nn.Module | None = None
        if stride != 1 or in_ch != out_ch:
            self.downsample = nn.Sequential(
                nn.Conv2d(in_ch, out_ch, 1, stride=stride, bias=False), nn.BatchNorm2d(out_ch)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


class ResNet(nn.Module):
    def __init__(self, config: ResNetConfig) -> None:
        super().__init__()
        w = config.width
        self.stem = nn.Sequential(
            nn.Conv2d(3, w, 7, stride=2, padding=3, bias=False),
            nn.BatchNorm2d(w),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(3, stride=2, padding=1),
        )
        stages = []
        in_ch = w
        for i, blocks in enumerate(config.layers):
            width = w * (2**i)
            layer = []
            for b in range(blocks):
                stride = 2 if (b == 0 and i > 0) else 1
                layer.append(Bottleneck(in_ch, width, stride))
                in_ch = width * Bottleneck.expansion
            stages.append(nn.Sequential(*layer))
        self.stages = nn.Sequential(*stages)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(in_ch, config.num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stages(self.stem(x))
        return self.fc(torch.flatten(self.pool(x), 1))


def build_resnet(size: str, seed: int = 0) -> ResNet:
    """A ResNet of ``size`` with deterministic random weights, in eval mode."""
    torch.manual_seed(seed)
    model = ResNet(RESNET_SIZES[size])
    model.eval()
    return model


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
