"""Real layer removal: a new, smaller module (fewer parameters), not masks."""

from __future__ import annotations

import copy
from collections import OrderedDict
from collections.abc import Callable, Sequence

from torch import nn

from sglp.core.errors import InvalidArgument
from sglp.core.units import TidiesAfterRemoval, bypass_of, check_indices, prunable_units, set_submodule

RemoveFn = Callable[[nn.Module, Sequence[int], bool], nn.Module]
_REMOVERS: list[tuple[type, RemoveFn]] = []


def register_remover(model_type: type, fn: RemoveFn) -> None:
    """Declare how models of `model_type` lose units for real (e.g. Hugging Face LLMs, whose config and KV-cache
    indices must follow); `fn(model, indices, inplace)` returns the model without them: `model` itself when
    `inplace`, else a new model leaving `model` untouched."""
    _REMOVERS.insert(0, (model_type, fn))


def remove_layers(model: nn.Module, indices: Sequence[int], inplace: bool = False) -> nn.Module:
    """A deep copy of `model` without the prunable units `indices` (0-based, forward order); `inplace=True`
    removes them from `model` itself (no second copy of the weights: an LLM's prune stage).

    Each removed unit is replaced by its bypass; bypasses that are `nn.Identity` inside an
    `nn.Sequential` are dropped, so the pruned network has no dead entries, and the remaining
    children keep their names (so `layer1.2` stays `layer1.2` in the state dict). A model may define
    `after_removal()` to tidy its structure afterwards (VGG folds channel padding into the next conv). Unless
    `inplace`, the input model is left untouched. The result records the removed indices (relative to its
    own input) in `pruned_from_units`.
    """
    units = prunable_units(model)  # also loads the adapters, which may register a remover
    for model_type, fn in _REMOVERS:
        if isinstance(model, model_type):
            return fn(model, indices, inplace)
    removed = check_indices(indices, len(units))
    if len(removed) == len(units):
        raise InvalidArgument("cannot remove every prunable unit: keep at least one")
    pruned = model if inplace else copy.deepcopy(model)
    pruned_units = prunable_units(pruned)
    touched_parents: set[str] = set()
    for i in removed:
        name, unit = pruned_units[i]
        set_submodule(pruned, name, bypass_of(unit))
        touched_parents.add(name.rpartition(".")[0])
    for parent_name in touched_parents:
        parent = pruned.get_submodule(parent_name) if parent_name else pruned
        if parent_name and isinstance(parent, nn.Sequential):
            kept = OrderedDict((n, m) for n, m in parent.named_children() if not isinstance(m, nn.Identity))
            set_submodule(pruned, parent_name, nn.Sequential(kept))  # children keep their names
    if isinstance(pruned, TidiesAfterRemoval):  # optional hook: tidy the structure after removal
        pruned.after_removal()
    pruned.pruned_from_units = {"units_total": len(units), "removed": removed}
    return pruned
