"""CNN1D for radio modulation classification (I/Q sequences, input (B, 2, L)), as in the SGLP paper's Table 5.

A stem conv, then `depth` prunable units of conv(k)+BN+ReLU at constant width (so a removed unit's bypass is
the identity), a max-pool after every `pool_every` units, global average pooling and a linear classifier.
Unit i is the i-th conv+BN+ReLU layer after the stem; its output is after the ReLU.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import nn


class ConvBNReLU1d(nn.Module):
    """conv1d (no bias) + BatchNorm + ReLU, width-preserving: one prunable unit."""

    def __init__(self, channels: int, kernel_size: int = 3) -> None:
        super().__init__()
        self.conv = nn.Conv1d(channels, channels, kernel_size, padding=kernel_size // 2, bias=False)
        self.bn = nn.BatchNorm1d(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn(self.conv(x)))

    def bypass(self) -> nn.Module:
        return nn.Identity()


class CNN1D(nn.Module):
    def __init__(
        self,
        num_classes: int = 11,
        in_channels: int = 2,
        width: int = 64,
        depth: int = 9,
        kernel_size: int = 3,
        pool_every: int = 3,
        stem_kernel: int = 7,
    ) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv1d(in_channels, width, stem_kernel, padding=stem_kernel // 2, bias=False),
            nn.BatchNorm1d(width),
            nn.ReLU(inplace=True),
        )
        layers: list[tuple[str, nn.Module]] = []
        for i in range(depth):
            layers.append((f"conv{i}", ConvBNReLU1d(width, kernel_size)))
            if pool_every and (i + 1) % pool_every == 0 and i + 1 < depth:
                layers.append((f"pool{i}", nn.MaxPool1d(2)))
        self.features = nn.Sequential(OrderedDict(layers))
        self.fc = nn.Linear(width, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv1d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.features(self.stem(x))
        return self.fc(h.mean(dim=-1))

    def prunable_units(self) -> list[tuple[str, nn.Module]]:
        return [(f"features.{n}", m) for n, m in self.features.named_children() if isinstance(m, ConvBNReLU1d)]


def cnn1d(num_classes: int = 11, in_channels: int = 2, width: int = 64, depth: int = 9, pool_every: int = 3) -> CNN1D:
    return CNN1D(num_classes, in_channels, width, depth, pool_every=pool_every)
