"""Plain torchvision models as prunable units (bring your own network).

- ResNet-18/34/50/101/152 (`torchvision.models.ResNet`): a unit is a residual block that keeps its
  input's shape (`downsample is None`), i.e. every block but the first of each stage; removing it
  leaves the identity shortcut.
- Vision Transformer (`torchvision.models.VisionTransformer`): a unit is an encoder block
  (`encoder.layers.encoder_layer_i`); both its sublayers are residual, so removal leaves identity.

VGG (conv + BN + ReLU units, with channel changes) is not handled here yet.
"""

from __future__ import annotations

from torch import nn
from torchvision.models.resnet import BasicBlock, Bottleneck, ResNet
from torchvision.models.vision_transformer import EncoderBlock, VisionTransformer

from sglp.errors import UnsupportedModelError
from sglp.units import register_bypass, register_units


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


register_units(ResNet, resnet_units)
register_units(VisionTransformer, vit_units)
for block_type in (BasicBlock, Bottleneck, EncoderBlock):
    register_bypass(block_type, identity_bypass)
