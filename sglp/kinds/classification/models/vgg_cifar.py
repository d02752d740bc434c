"""VGG with BatchNorm for small images (Simonyan & Zisserman 2015; the CIFAR variant of Liu et al. 2017).

The prunable unit is one conv3x3 + BN + ReLU layer (12 of the 13 in VGG-16, 15 of 16 in VGG-19;
the first stays). Removing a layer whose input and output widths are equal leaves the identity.
Where they differ (the first layer of a stage), the removed layer is replaced by a parameter-free
channel zero-padding (as option-A ResNet shortcuts do); candidate networks are scored that way.
After real surgery, `channel_fix` decides what becomes of the padding:

- `slice` (default): the next conv drops the weights of the padded input channels. Those channels
  are always zero, so the output is *exactly* that of the padded network, with fewer parameters.
- `reinit`: LayerPrune's choice, the next layer (conv + BN) is re-created, freshly initialised, for
  the narrower input. Changes the function; fine-tuning has to recover it.
- `pad`: keep the padding as is.

Max-pooling uses ceil_mode so that 28x28 inputs survive five poolings.
"""

from __future__ import annotations

import logging
from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import nn

from sglp.core.errors import InvalidArgument, UnsupportedModelError

log = logging.getLogger(__name__)

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


def conv_layer_bypass(conv: nn.Conv2d) -> nn.Module:
    """What replaces a removed conv layer: the identity, or a zero-padding of the channels when it widens them."""
    c_in, c_out = conv.in_channels, conv.out_channels
    if c_in == c_out:
        return nn.Identity()
    if c_in < c_out:
        return ChannelPad(c_in, c_out)
    raise UnsupportedModelError(f"cannot bypass a layer that narrows {c_in} -> {c_out} channels")


class ConvBNReLU(nn.Module):
    """conv3x3 (no bias) + BatchNorm + ReLU: one prunable unit."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn(self.conv(x)))

    def bypass(self) -> nn.Module:
        return conv_layer_bypass(self.conv)


CHANNEL_FIXES = ("slice", "reinit", "pad")


class CifarVGG(nn.Module):
    """VGG-BN: `features` holds the layers and the poolings in forward order; unit i is the (i+1)-th
    ConvBNReLU, counted from 0 (the first layer maps the image's channels and is not prunable)."""

    def __init__(
        self, depth: int = 16, num_classes: int = 10, in_channels: int = 3, channel_fix: str = "slice"
    ) -> None:
        super().__init__()
        if depth not in CONFIGS:
            raise ValueError(f"VGG depth must be one of {sorted(CONFIGS)}, got {depth}")
        if channel_fix not in CHANNEL_FIXES:
            raise InvalidArgument(f"model channel_fix={channel_fix!r}: choose one of {CHANNEL_FIXES}")
        self.channel_fix = channel_fix
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

    def after_removal(self) -> None:
        """Resolve each ChannelPad left by surgery into the next conv (see the module docstring)."""
        if self.channel_fix == "pad":
            return
        layers = list(self.features.named_children())
        i = 0
        while i < len(layers):
            name, pad = layers[i]
            if not isinstance(pad, ChannelPad):
                i += 1
                continue
            j = next((j for j in range(i + 1, len(layers)) if isinstance(layers[j][1], ChannelPad | ConvBNReLU)), None)
            if j is None:  # nothing to fold into: keep the padding
                i += 1
                continue
            nxt_name, nxt = layers[j]
            if isinstance(nxt, ChannelPad):  # two pads in a row: one pad from the first width to the last
                layers[j] = (nxt_name, ChannelPad(pad.in_channels, nxt.out_channels))
            else:
                layers[j] = (nxt_name, self._narrowed(nxt, pad.in_channels))
                log.info(
                    "VGG surgery: %s now takes %d input channels (%s)", nxt_name, pad.in_channels, self.channel_fix
                )
            del layers[i]
        self.features = nn.Sequential(OrderedDict(layers))

    def _narrowed(self, layer: ConvBNReLU, in_channels: int) -> ConvBNReLU:
        new = ConvBNReLU(in_channels, layer.conv.out_channels)
        if self.channel_fix == "slice":
            with torch.no_grad():
                new.conv.weight.copy_(layer.conv.weight[:, :in_channels])
            new.bn.load_state_dict(layer.bn.state_dict())
        else:  # reinit, as LayerPrune
            nn.init.kaiming_normal_(new.conv.weight, mode="fan_out", nonlinearity="relu")
        return (
            new.to(memory_format=torch.channels_last)
            if layer.conv.weight.is_contiguous(memory_format=torch.channels_last)
            else new
        )

    def prunable_units(self) -> list[tuple[str, nn.Module]]:
        """ConvBNReLU layers in forward order, except the first (it maps the image's channels)."""
        units = [(f"features.{n}", m) for n, m in self.features.named_children() if isinstance(m, ConvBNReLU)]
        return units[1:]


def vgg16_bn(num_classes: int = 10, in_channels: int = 3, channel_fix: str = "slice") -> CifarVGG:
    return CifarVGG(16, num_classes, in_channels, channel_fix)


def vgg19_bn(num_classes: int = 10, in_channels: int = 3, channel_fix: str = "slice") -> CifarVGG:
    return CifarVGG(19, num_classes, in_channels, channel_fix)
