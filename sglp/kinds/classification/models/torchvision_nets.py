"""torchvision classifiers built from config, with their published weights where the user has them.

`weights` names a torchvision weights enum member (e.g. "IMAGENET1K_V2" for ResNet-50), fetched through
torchvision into the torch hub cache (internet needed once); `weights_path` is a local state-dict file
(e.g. that cached file, copied to an offline machine). Neither: random initialisation from config.
A classifier for `num_classes` != the weights' classes is replaced by a new one after loading; an input with
`in_channels` != 3 gets a new first conv whose pretrained filters are averaged over the RGB channels.
"""

from __future__ import annotations

import torch
import torchvision
from torch import nn

from sglp.core.errors import CheckpointError, InvalidArgument
from sglp.core.units import set_submodule


def _last_linear(model: nn.Module) -> tuple[str, nn.Linear]:
    name, layer = [(n, m) for n, m in model.named_modules() if isinstance(m, nn.Linear)][-1]
    return name, layer


def _first_conv(model: nn.Module) -> tuple[str, nn.Conv2d]:
    return next((n, m) for n, m in model.named_modules() if isinstance(m, nn.Conv2d))


def _pretrained_state(arch: str, weights: str | None, weights_path: str | None) -> dict | None:
    if weights_path:
        try:
            state = torch.load(weights_path, map_location="cpu", weights_only=True)
        except FileNotFoundError:
            raise CheckpointError(f"weights_path={weights_path} does not exist") from None
        except Exception as e:  # a corrupt or foreign file
            raise CheckpointError(f"cannot read weights_path={weights_path}: {e}") from None
        return state.get("state_dict", state) if isinstance(state, dict) else state
    if weights:
        try:
            enum = torchvision.models.get_model_weights(arch)[weights]
        except KeyError:
            raise InvalidArgument(f"{arch} has no torchvision weights named {weights!r}") from None
        try:
            return enum.get_state_dict(progress=False)
        except Exception as e:  # offline, or the hub unreachable
            raise CheckpointError(
                f"could not fetch torchvision weights {arch}.{weights} ({type(e).__name__}: {e}). Offline: copy the "
                f"file from a machine with internet (torch hub cache, {enum.url}) and set weights_path=<file>."
            ) from None
    return None


def torchvision_classifier(
    arch: str,
    num_classes: int = 1000,
    in_channels: int = 3,
    weights: str | None = None,
    weights_path: str | None = None,
    **kwargs,
) -> nn.Module:
    """torchvision.models.<arch> for `num_classes` classes and `in_channels` input channels (see module docs)."""
    try:
        model = torchvision.models.get_model(arch, weights=None, **kwargs)
    except ValueError as e:
        raise InvalidArgument(f"unknown torchvision model {arch!r}: {e}") from None
    state = _pretrained_state(arch, weights, weights_path)
    if state is not None:
        model.load_state_dict(state)
    name, fc = _last_linear(model)
    if fc.out_features != num_classes:
        set_submodule(model, name, nn.Linear(fc.in_features, num_classes))
    if in_channels != 3:
        name, conv = _first_conv(model)
        new = nn.Conv2d(
            in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding, bias=conv.bias is not None
        )
        if state is not None:
            with torch.no_grad():
                new.weight.copy_(conv.weight.mean(dim=1, keepdim=True).expand_as(new.weight))
                if conv.bias is not None:
                    new.bias.copy_(conv.bias)
        set_submodule(model, name, new)
    return model
