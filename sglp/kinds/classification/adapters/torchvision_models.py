"""Plain torchvision models as prunable units (bring your own network).

- ResNet-18/34/50/101/152 (`torchvision.models.ResNet`): a unit is a residual block that keeps its
  input's shape (`downsample is None`), i.e. every block but the first of each stage; removing it
  leaves the identity shortcut.
- Vision Transformer (`torchvision.models.VisionTransformer`): a unit is an encoder block
  (`encoder.layers.encoder_layer_i`); both its sublayers are residual, so removal leaves identity.
- VGG with BatchNorm (`vgg11_bn` ... `vgg19_bn`): a unit is one conv + BN + ReLU layer (every one but the first).
  torchvision keeps the three as separate entries of `features`, so on first use they are grouped, in place,
  into one `VGGLayer` per layer, named by the conv's index (`features.0`, `features.3`, ...; the pools keep
  theirs). State dicts in torchvision's layout still load (a load hook maps `features.3.weight` to
  `features.3.conv.weight`, `features.4.*` to `features.3.bn.*`). Removing a layer that widens the channels
  leaves a parameter-free zero-padding of the channels (exact: the next conv sees zeros there).
"""

from __future__ import annotations

import logging
import re
from collections import OrderedDict

from torch import nn
from torchvision.models.resnet import BasicBlock, Bottleneck, ResNet
from torchvision.models.vgg import VGG
from torchvision.models.vision_transformer import EncoderBlock, VisionTransformer

from sglp.core.errors import UnsupportedModelError
from sglp.core.units import register_bypass, register_units
from sglp.kinds.classification.models.vgg_cifar import conv_layer_bypass

log = logging.getLogger(__name__)


def resnet_units(model: ResNet) -> list[tuple[str, nn.Module]]:
    units = []
    for stage in ("layer1", "layer2", "layer3", "layer4"):
        for name, block in getattr(model, stage).named_children():
            if getattr(block, "downsample", None) is None:
                units.append((f"{stage}.{name}", block))
    return units


def vit_units(model: VisionTransformer) -> list[tuple[str, nn.Module]]:
    return [(f"encoder.layers.{name}", block) for name, block in model.encoder.layers.named_children()]


def identity_bypass(unit: nn.Module) -> nn.Module:
    if getattr(unit, "downsample", None) is not None:
        raise UnsupportedModelError(f"{type(unit).__name__} with a downsample shortcut changes shape: not removable")
    return nn.Identity()


class VGGLayer(nn.Module):
    """torchvision's conv, BN and ReLU of one VGG layer as one module (the same module objects)."""

    def __init__(self, conv: nn.Conv2d, bn: nn.BatchNorm2d, relu: nn.Module) -> None:
        super().__init__()
        self.conv, self.bn, self.relu = conv, bn, relu

    def forward(self, x):
        return self.relu(self.bn(self.conv(x)))

    def bypass(self) -> nn.Module:
        return conv_layer_bypass(self.conv)


def _torchvision_vgg_keys(layers: dict[int, int]):
    """A load_state_dict pre-hook mapping torchvision's `features.{i}.*` keys to the grouped layout;
    `layers` maps a conv's index to its layer name index (the BN sits at conv index + 1)."""
    bn_of = {i + 1: i for i in layers}

    def hook(state_dict, prefix, *_):
        for key in list(state_dict):
            m = re.fullmatch(re.escape(prefix) + r"(\d+)\.(\w+)", key)
            if not m:
                continue
            i, leaf = int(m.group(1)), m.group(2)
            if i in layers:
                state_dict[f"{prefix}{i}.conv.{leaf}"] = state_dict.pop(key)
            elif i in bn_of:
                state_dict[f"{prefix}{bn_of[i]}.bn.{leaf}"] = state_dict.pop(key)

    return hook


def group_vgg_layers(model: VGG) -> VGG:
    """Group `features`' conv/BN/ReLU triples into VGGLayers in place (idempotent); returns the model."""
    if any(isinstance(m, VGGLayer) for m in model.features):
        return model
    children = list(model.features.named_children())
    if not any(isinstance(m, nn.BatchNorm2d) for _, m in children):
        raise UnsupportedModelError("VGG without BatchNorm (vgg16, not vgg16_bn) is not supported: use a *_bn model")
    grouped, convs, i = [], {}, 0
    while i < len(children):
        name, m = children[i]
        if isinstance(m, nn.Conv2d):
            grouped.append((name, VGGLayer(m, children[i + 1][1], children[i + 2][1])))
            convs[int(name)] = int(name)
            i += 3
        else:
            grouped.append((name, m))
            i += 1
    model.features = nn.Sequential(OrderedDict(grouped))
    model.features._register_load_state_dict_pre_hook(_torchvision_vgg_keys(convs))
    log.info("grouped torchvision VGG conv/BN/ReLU entries into %d prunable layers", len(convs))
    return model


def vgg_units(model: VGG) -> list[tuple[str, nn.Module]]:
    group_vgg_layers(model)
    layers = [(f"features.{n}", m) for n, m in model.features.named_children() if isinstance(m, VGGLayer)]
    return layers[1:]  # the first layer maps the image's channels


register_units(ResNet, resnet_units)
register_units(VGG, vgg_units)
register_units(VisionTransformer, vit_units)
for block_type in (BasicBlock, Bottleneck, EncoderBlock):
    register_bypass(block_type, identity_bypass)
