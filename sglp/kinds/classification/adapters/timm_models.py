"""timm models as prunable units: the families whose residual blocks keep their input's shape.

A unit is a residual block whose shortcut is the identity (same channels, stride 1); removing it leaves that
identity, so the pruned network is the same class with the block's entry replaced by `nn.Identity` (no parameters).
Blocks that change shape (the first of a stage, with a projection shortcut or none) are never units.

| family (timm class)                 | blocks at             | a unit when                              |
|-------------------------------------|-----------------------|------------------------------------------|
| ResNet / ResNeXt / SE-ResNet        | `layer{1-4}.{j}`      | `downsample is None`                     |
| RegNet                              | `s{1-4}.b{j}`         | `downsample` is `nn.Identity`            |
| ConvNeXt                            | `stages.{i}.blocks.{j}` | `shortcut` is `nn.Identity`            |
| EfficientNet / MobileNet-V2 (-V3)   | `blocks.{i}.{j}`      | `has_skip` (inverted residuals)          |
| ViT / DeiT (distilled too)          | `blocks.{j}`          | always (both sublayers are residual)     |
| Swin                                | `layers.{i}.blocks.{j}` | always                                 |
| ByobNet (resnext26ts, gernet, ...)  | `stages.{i}.{j}`      | `shortcut` is `nn.Identity`              |

A family = one `Family` row in FAMILIES (adding one registers it); any other timm model stops with
UnsupportedModelError naming the supported ones. This module is imported only when a timm model is seen
(sglp.core.units.BUILTIN_REGISTRANTS), so `import sglp` does not import timm.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable
from dataclasses import dataclass

import timm  # noqa: F401  (this registrant is imported only for timm models)
from torch import nn

from sglp.core.errors import UnsupportedModelError
from sglp.core.units import register_bypass, register_units


def _identity_shortcut(attr: str) -> Callable[[nn.Module], bool]:
    return lambda block: isinstance(getattr(block, attr, None), nn.Identity)


def _has_skip(block: nn.Module) -> bool:  # timm's inverted residuals say whether they add their input
    return bool(getattr(block, "has_skip", False))


@dataclass(frozen=True)
class Family:
    """How one timm model class is seen as units."""

    model: str  # "<module>.<class>" of the timm model
    blocks: str  # a regular expression matching the qualified names of its blocks (forward order = module order)
    removable: Callable[[nn.Module], bool]  # the block keeps its input's shape and has an identity shortcut
    block_module: str  # where its block classes live
    block_classes: tuple[str, ...]  # the classes a unit can be (each gets this family's bypass)

    def model_class(self) -> type:
        module, _, name = self.model.rpartition(".")
        return getattr(importlib.import_module(module), name)


_INVERTED_RESIDUALS = (  # EfficientNet's and MobileNet-V3's blocks
    "timm.models._efficientnet_blocks",
    ("DepthwiseSeparableConv", "InvertedResidual", "UniversalInvertedResidual", "CondConvResidual", "EdgeResidual"),
)
_BYOB_BLOCKS = (
    "BasicBlock", "BottleneckBlock", "DarkBlock", "EdgeBlock", "RepVggBlock", "MobileOneBlock", "SelfAttnBlock",
)  # fmt: skip
_VIT_BLOCKS = ("Block", "ResPostBlock", "ParallelScalingBlock", "ParallelThingsBlock")

FAMILIES: dict[str, Family] = {
    "resnet": Family("timm.models.resnet.ResNet", r"layer[1-4]\.\d+", lambda b: getattr(b, "downsample", 0) is None,
                     "timm.models.resnet", ("BasicBlock", "Bottleneck")),
    "regnet": Family("timm.models.regnet.RegNet", r"s[1-4]\.b\d+", _identity_shortcut("downsample"),
                     "timm.models.regnet", ("Bottleneck", "PreBottleneck")),
    "convnext": Family("timm.models.convnext.ConvNeXt", r"stages\.\d+\.blocks\.\d+", _identity_shortcut("shortcut"),
                       "timm.models.convnext", ("ConvNeXtBlock",)),
    "efficientnet": Family("timm.models.efficientnet.EfficientNet", r"blocks\.\d+\.\d+", _has_skip,
                           *_INVERTED_RESIDUALS),
    "mobilenetv3": Family("timm.models.mobilenetv3.MobileNetV3", r"blocks\.\d+\.\d+", _has_skip,
                          *_INVERTED_RESIDUALS),
    "vit": Family("timm.models.vision_transformer.VisionTransformer", r"blocks\.\d+", lambda b: True,
                  "timm.models.vision_transformer", _VIT_BLOCKS),
    "swin": Family("timm.models.swin_transformer.SwinTransformer", r"layers\.\d+\.blocks\.\d+", lambda b: True,
                   "timm.models.swin_transformer", ("SwinTransformerBlock",)),
    "byobnet": Family("timm.models.byobnet.ByobNet", r"stages\.\d+\.\d+", _identity_shortcut("shortcut"),
                      "timm.models.byobnet", _BYOB_BLOCKS),
}  # fmt: skip


# What sglp.core.units.prunable_units adds to its error for a timm model of another family.
UNSUPPORTED_HINT = (
    f"supported timm families: {', '.join(FAMILIES)}; add a row to "
    "sglp.kinds.classification.adapters.timm_models.FAMILIES for another"
)


def family_of(model: nn.Module) -> Family:
    """The family row whose class `model` is an instance of (subclasses too: DeiT-distilled is a ViT)."""
    return next(f for f in FAMILIES.values() if isinstance(model, f.model_class()))


def timm_units(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """The family's shape-keeping residual blocks, in forward order."""
    family = family_of(model)  # registered only for the FAMILIES' classes
    pattern = re.compile(family.blocks)
    return [(n, m) for n, m in model.named_modules() if pattern.fullmatch(n) and family.removable(m)]


def _bypass_for(family: Family) -> Callable[[nn.Module], nn.Module]:
    def bypass(block: nn.Module) -> nn.Module:
        if not family.removable(block):
            raise UnsupportedModelError(f"{type(block).__name__} changes its input's shape: not removable")
        return nn.Identity()

    return bypass


for _family in FAMILIES.values():
    register_units(_family.model_class(), timm_units)
    _module = importlib.import_module(_family.block_module)
    for _cls in _family.block_classes:
        register_bypass(getattr(_module, _cls), _bypass_for(_family))
