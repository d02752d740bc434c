"""The prunable-unit contract: every model is seen as an ordered list of units.

Unit i is the i-th prunable unit in forward order, counted from 0; its *output* is
what the unit's module returns (for a ResNet: the residual block's output after its
final ReLU). A unit module knows what replaces it when it is removed: `unit.bypass()`
returns a module (often `nn.Identity`) computing the network's path without the unit.

One mechanism serves both uses: `units_bypassed` swaps bypasses in temporarily
(a candidate network for scoring, no copy), `sglp.core.surgery.remove_layers` swaps them in
for good on a copy.

Models that cannot carry these methods (e.g. plain torchvision networks) get them from an
adapter registered by type: `register_units(model_type, fn)` and `register_bypass(unit_type, fn)`;
`sglp/kinds/classification/adapters/` holds the built-in ones.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Protocol, runtime_checkable

import torch
from torch import nn

from sglp.core.errors import InvalidArgument, UnsupportedModelError


@runtime_checkable
class PrunableModel(Protocol):
    """A model that lists its own units (else an adapter registered by type does). The one place the optional model
    hooks are written down; each is used only when present:

    - `prunable_units()` -> [(qualified name, unit module), ...] in forward order (required, or an adapter);
    - `features_before(i, x)` / `forward_from(i, h)`: the forward split at unit i, so that the part before a
      segment runs once per segment in the search (SplitForward; `forward_from(i, features_before(i, x)) ==
      model(x)`, tests/test_contracts.py);
    - `after_removal()`: tidy the structure after surgery (e.g. VGG's classifier input).

    Unit modules carry `bypass()` (what replaces the removed unit) and, for layer fusion's alignment,
    `hidden_features()` / `permute_hidden(perm)` (FusableUnit).
    """

    def prunable_units(self) -> list[tuple[str, nn.Module]]: ...


@runtime_checkable
class SplitForward(Protocol):
    """A model whose forward pass can be split at a unit (optional hook of PrunableModel)."""

    def features_before(self, unit: int, x: torch.Tensor) -> torch.Tensor: ...

    def forward_from(self, unit: int, h: torch.Tensor) -> torch.Tensor: ...


@runtime_checkable
class TidiesAfterRemoval(Protocol):
    """A model that fixes its own structure after units are removed (optional hook of PrunableModel)."""

    def after_removal(self) -> None: ...


@runtime_checkable
class FusableUnit(Protocol):
    """A unit whose hidden channels can be matched and permuted (layer fusion's `align=true`)."""

    def hidden_features(self) -> torch.Tensor: ...

    def permute_hidden(self, perm: torch.Tensor) -> None: ...


UnitsFn = Callable[[nn.Module], list[tuple[str, nn.Module]]]
BypassFn = Callable[[nn.Module], nn.Module]
_UNITS: list[tuple[type, UnitsFn]] = []
_BYPASSES: list[tuple[type, BypassFn]] = []


def register_units(model_type: type, fn: UnitsFn) -> None:
    """Declare how to list the prunable units of models of `model_type` (most recent wins)."""
    _UNITS.insert(0, (model_type, fn))


def register_bypass(unit_type: type, fn: BypassFn) -> None:
    """Declare what replaces a removed unit of `unit_type` (most recent wins)."""
    _BYPASSES.insert(0, (unit_type, fn))


# The built-in registrants, found by name like entry points (the registry imports none of them): (module-name
# prefix of the models they handle, or "" for any; the registrant module). Each registers itself on import.
BUILTIN_REGISTRANTS: tuple[tuple[str, str], ...] = (
    ("", "sglp.kinds.classification.adapters"),  # torchvision ResNet / VGG / ViT
    # timm families (imported only when a timm model is seen)
    ("timm.", "sglp.kinds.classification.adapters.timm_models"),
    ("transformers.", "sglp.kinds.causal_lm.layers"),  # Hugging Face decoders (imported only when one is seen)
)


def _load_builtin_adapters(module: nn.Module | None = None) -> None:
    for prefix, registrant in BUILTIN_REGISTRANTS:
        if not prefix or (module is not None and type(module).__module__.startswith(prefix)):
            importlib.import_module(registrant)


def _registrant_hint(model: nn.Module) -> str:
    """What the registrant for the model's library says it supports (its UNSUPPORTED_HINT), else ""."""
    for prefix, registrant in BUILTIN_REGISTRANTS:
        if prefix and type(model).__module__.startswith(prefix):
            hint = getattr(importlib.import_module(registrant), "UNSUPPORTED_HINT", "")
            return f" ({hint})" if hint else ""
    return ""


def prunable_units(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """Ordered (qualified name, module) pairs of the model's prunable units."""
    if isinstance(model, PrunableModel):
        return list(model.prunable_units())
    _load_builtin_adapters(model)
    for model_type, fn in _UNITS:
        if isinstance(model, model_type):
            return fn(model)
    hint = _registrant_hint(model)
    raise UnsupportedModelError(
        f"{type(model).__name__} has no prunable-unit adapter{hint}: give it a `prunable_units()` method "
        "returning [(name, module), ...] in forward order, each module with a `bypass()` method, or register "
        "one with sglp.core.units.register_units / register_bypass."
    )


def bypass_of(unit: nn.Module) -> nn.Module:
    """What replaces `unit` when it is removed."""
    if hasattr(unit, "bypass"):
        return unit.bypass()
    _load_builtin_adapters()
    for unit_type, fn in _BYPASSES:
        if isinstance(unit, unit_type):
            return fn(unit)
    raise UnsupportedModelError(f"{type(unit).__name__} has no `bypass()` and no registered bypass: cannot be removed")


def check_indices(indices: Sequence[int], num_units: int) -> list[int]:
    """Sorted unique unit indices, validated against 0..num_units-1."""
    bad = [i for i in indices if not 0 <= int(i) < num_units]
    if bad:
        raise InvalidArgument(
            f"unit indices {bad} out of range: the model has {num_units} prunable units (0..{num_units - 1})"
        )
    return sorted({int(i) for i in indices})


def set_submodule(model: nn.Module, name: str, module: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, module)


@contextmanager
def units_bypassed(model: nn.Module, indices: Sequence[int]) -> Iterator[nn.Module]:
    """Temporarily replace the given units by their bypass; `model` itself is the candidate.

    The removed units leave the module tree for the duration, so `model.parameters()`
    are exactly the candidate network's parameters. Restored on exit, even on error.
    """
    units = prunable_units(model)
    swapped = [(units[i][0], units[i][1]) for i in check_indices(indices, len(units))]
    try:
        for name, unit in swapped:
            set_submodule(model, name, bypass_of(unit))
        yield model
    finally:
        for name, unit in swapped:
            set_submodule(model, name, unit)


def unit_width(unit: nn.Module) -> int:
    """Output width of a unit: `out_channels`/`out_features` of its last conv or linear layer (the bar height
    of the SGLP paper's Fig. 3); 0 when it has none."""
    width = 0
    for m in unit.modules():
        if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Conv3d)):
            width = m.out_channels
        elif isinstance(m, nn.Linear):
            width = m.out_features
    return width
