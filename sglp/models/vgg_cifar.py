"""VGG with BatchNorm for small images (Simonyan & Zisserman 2015; the CIFAR variant of Liu et al. 2017).

The prunable unit is one conv3x3 + BN + ReLU layer (13 in VGG-16, 16 in VGG-19). Removing a layer
whose input and output widths are equal leaves the identity. Where they differ (the first layer of
a stage), the removed layer is replaced by a parameter-free channel zero-padding (as option-A
ResNet shortcuts do): the next layer keeps its pretrained weights and the padded channels add
nothing to its output. (LayerPrune instead re-initialises the next conv for the narrower input; not
implemented yet.) Max-pooling uses ceil_mode so that 28x28 inputs survive five poolings.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from sglp.errors import UnsupportedModelError

CONFIGS = {
    16: [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"],
    19: [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512, "M"],
}


class ChannelPad(nn.Module):
    """Zero-pad the channel dimension from `in_channels` to `out_channels` (no parameters)."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.in_channels, self.out_channels = in_channels, out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.pad(x, (0, 0, 0, 0, 0, self.out_channels - self.in_channels))

    def extra_repr(self) -> str:
        return f"{self.in_channels}->{self.out_channels}"


class ConvBNReLU(nn.Module):
    """conv3x3 (no bias) + BatchNorm + ReLU: one prunable unit."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn(self.conv(x)))

    def bypass(self) -> nn.Module:
        c_in, c_out = self.conv.in_channels, self.conv.out_channels
        if c_in == c_out:
            return nn.Identity()
        if c_in < c_out:
            return ChannelPad(c_in, c_out)
        raise UnsupportedModelError(f"cannot bypass a layer that narrows {c_in} -> {c_out} channels")


class CifarVGG(nn.Module):
    """VGG-BN: `features` holds the units and the poolings in forward order; unit i is the i-th
    ConvBNReLU (from 0). The first unit changes the input's channel count and stays (not prunable)."""

    def __init__(self, depth: int = 16, num_classes: int = 10, in_channels: int = 3) -> None:
        super().__init__()
        if depth not in CONFIGS:
            raise ValueError(f"VGG depth must be one of {sorted(CONFIGS)}, got {depth}")
        layers: list[nn.Module] = []
        channels = in_channels
        for v in CONFIGS[depth]:
            if v == "M":
                layers.append(nn.MaxPool2d(2, ceil_mode=True))
            else:
                layers.append(ConvBNReLU(channels, int(v)))
                channels = int(v)
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(channels, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x)
        return self.classifier(F.adaptive_avg_pool2d(x, 1).flatten(1))

    def prunable_units(self) -> list[tuple[str, nn.Module]]:
        """ConvBNReLU layers in forward order, except the first (it maps the image's channels)."""
        units = [(f"features.{n}", m) for n, m in self.features.named_children() if isinstance(m, ConvBNReLU)]
        return units[1:]


def vgg16_bn(num_classes: int = 10, in_channels: int = 3) -> CifarVGG:
    return CifarVGG(16, num_classes, in_channels)


def vgg19_bn(num_classes: int = 10, in_channels: int = 3) -> CifarVGG:
    return CifarVGG(19, num_classes, in_channels)
