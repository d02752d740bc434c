"""CIFAR-style ResNets (He et al., 2016, Sec. 4.2): 3 stages x n basic blocks, 16/32/64 channels.

Depth = 6n + 2 (ResNet-20/32/44/56/110 for n = 3/5/7/9/18). Shortcuts are option A
(parameter-free: stride-2 subsampling and zero-padded channels), so *every* residual
block, including the first block of a stage, is a prunable unit: removing a block
leaves its shortcut, which still maps the block's input shape to its output shape.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class ShortcutA(nn.Module):
    """Option-A shortcut: subsample spatially by `stride`, zero-pad channels to `out_channels`."""

    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__()
        self.in_channels, self.out_channels, self.stride = in_channels, out_channels, stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride != 1:
            x = x[:, :, :: self.stride, :: self.stride]
        pad = self.out_channels - self.in_channels
        if pad:
            x = F.pad(x, (0, 0, 0, 0, pad // 2, pad - pad // 2))
        return x

    def extra_repr(self) -> str:
        return f"{self.in_channels}->{self.out_channels}, stride={self.stride}"


class BasicBlock(nn.Module):
    """conv3x3-BN-ReLU-conv3x3-BN + shortcut, then ReLU. A prunable unit.

    `bypass()` is what the network computes when this block is removed: the
    shortcut alone (identity, or ShortcutA where the block changes shape).
    The final ReLU is part of the block and goes with it.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        if stride != 1 or in_channels != out_channels:
            self.shortcut: nn.Module = ShortcutA(in_channels, out_channels, stride)
        else:
            self.shortcut = nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))

    def bypass(self) -> nn.Module:
        return self.shortcut

    def hidden_features(self) -> torch.Tensor:
        """(C, f): per hidden channel (conv1 output = conv2 input), its incoming and outgoing weights and BN
        parameters, the rows layer fusion matches when aligning two blocks."""
        parts = [self.conv1.weight.flatten(1), self.conv2.weight.transpose(0, 1).flatten(1)]
        parts += [t[:, None] for t in (self.bn1.weight, self.bn1.bias, self.bn1.running_mean, self.bn1.running_var)]
        return torch.cat(parts, dim=1).detach()

    @torch.no_grad()
    def permute_hidden(self, perm: torch.Tensor) -> None:
        """Reorder the hidden channels by `perm` (the block computes the same function)."""
        self.conv1.weight.copy_(self.conv1.weight[perm])
        self.conv2.weight.copy_(self.conv2.weight[:, perm])
        for t in (self.bn1.weight, self.bn1.bias, self.bn1.running_mean, self.bn1.running_var):
            t.copy_(t[perm])


class CifarResNet(nn.Module):
    """ResNet for small images. `blocks` is a flat `nn.Sequential` of all residual blocks
    in forward order, so unit i is `blocks[i]` (the i-th block, counted from 0)."""

    def __init__(
        self,
        depth: int = 56,
        num_classes: int = 10,
        in_channels: int = 3,
        widths: tuple[int, int, int] = (16, 32, 64),
    ) -> None:
        super().__init__()
        if (depth - 2) % 6 != 0 or depth < 8:
            raise ValueError(f"CIFAR ResNet depth must be 6n+2 (20, 32, 44, 56, 110, ...), got {depth}")
        n = (depth - 2) // 6
        self.depth = depth
        self.conv1 = nn.Conv2d(in_channels, widths[0], 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(widths[0])
        blocks: list[nn.Module] = []
        channels = widths[0]
        for stage, width in enumerate(widths):
            for i in range(n):
                stride = 2 if (stage > 0 and i == 0) else 1
                blocks.append(BasicBlock(channels, width, stride))
                channels = width
        self.blocks = nn.Sequential(*blocks)
        self.fc = nn.Linear(channels, num_classes)
        self._init_weights()

    def _init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.bn1(self.conv1(x)))
        x = self.blocks(x)
        x = F.adaptive_avg_pool2d(x, 1).flatten(1)
        return self.fc(x)

    def features_before(self, unit: int, x: torch.Tensor) -> torch.Tensor:
        """The input of unit `unit` (stem, then blocks 0..unit-1). Indices follow `self.blocks`' slots,
        which match the unit indices on the full model and on its bypass views (not after surgery)."""
        x = F.relu(self.bn1(self.conv1(x)))
        for block in self.blocks[:unit]:
            x = block(x)
        return x

    def forward_from(self, unit: int, h: torch.Tensor) -> torch.Tensor:
        """Logits from the input `h` of unit `unit` onwards; forward(x) == forward_from(u, features_before(u, x))."""
        for block in self.blocks[unit:]:
            h = block(h)
        return self.fc(F.adaptive_avg_pool2d(h, 1).flatten(1))

    def prunable_units(self) -> list[tuple[str, nn.Module]]:
        """Residual blocks in forward order: unit i is `blocks.{i}`."""
        return [(f"blocks.{name}", b) for name, b in self.blocks.named_children() if isinstance(b, BasicBlock)]


def resnet20(num_classes: int = 10, in_channels: int = 3) -> CifarResNet:
    return CifarResNet(20, num_classes, in_channels)


def resnet32(num_classes: int = 10, in_channels: int = 3) -> CifarResNet:
    return CifarResNet(32, num_classes, in_channels)


def resnet44(num_classes: int = 10, in_channels: int = 3) -> CifarResNet:
    return CifarResNet(44, num_classes, in_channels)


def resnet56(num_classes: int = 10, in_channels: int = 3) -> CifarResNet:
    return CifarResNet(56, num_classes, in_channels)


def resnet110(num_classes: int = 10, in_channels: int = 3) -> CifarResNet:
    return CifarResNet(110, num_classes, in_channels)
