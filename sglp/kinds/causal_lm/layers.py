"""Where each model family keeps its decoder layers, and real removal of some of them.

One small table (`LAYER_PATHS`) covers LLaMA, Mistral, Qwen2, Gemma/Gemma2, Phi-3 (`model.layers`),
GPT-2 and Falcon (`transformer.h`), GPT-NeoX (`gpt_neox.layers`) and OPT (`model.decoder.layers`); any other
family works by passing `layers_path`, and an unknown one gets an error naming that argument.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

from torch import nn

from sglp.core.errors import InvalidArgument, UnsupportedModelError
from sglp.core.units import check_indices, register_bypass, register_units

LAYER_PATHS = (
    "model.layers",
    "model.language_model.layers",
    "transformer.h",
    "gpt_neox.layers",
    "model.decoder.layers",
)


def decoder_layers(model: nn.Module, layers_path: str | None = None) -> tuple[str, nn.ModuleList]:
    """(attribute path, ModuleList) of the model's decoder layers: at `layers_path`, else at the model's
    `sglp_layers_path` (model.layers_path in the config), else at the first of LAYER_PATHS that holds them."""
    layers_path = layers_path or getattr(model, "sglp_layers_path", None)
    for path in [layers_path] if layers_path else LAYER_PATHS:
        try:
            layers = model.get_submodule(path)
        except AttributeError:
            continue
        if isinstance(layers, nn.ModuleList) and len(layers):
            return path, layers
    if layers_path:
        raise UnsupportedModelError(f"{type(model).__name__} has no ModuleList of decoder layers at {layers_path!r}")
    raise UnsupportedModelError(
        f"{type(model).__name__}: decoder layers not found at any of {LAYER_PATHS}; pass layers_path='<attribute "
        "path of the ModuleList>' (e.g. 'model.layers')"
    )


class SkipLayer(nn.Module):
    """What a removed decoder layer becomes in a scoring view: returns its input hidden states unchanged
    (transformers >= 5 decoder layers take hidden_states first and return a tensor)."""

    def forward(self, hidden_states=None, *args, **kwargs):
        return hidden_states if hidden_states is not None else args[0]


def _per_layer_lists(config) -> list[str]:
    """Names of config attributes holding one entry per layer (e.g. `layer_types`)."""
    n = config.num_hidden_layers
    return [k for k, v in vars(config).items() if isinstance(v, list) and len(v) == n and k != "architectures"]


def renumber_layer_idx(layers: Sequence[nn.Module]) -> None:
    """Set every `layer_idx` inside layer j to j (attention modules index the KV cache with it)."""
    for j, layer in enumerate(layers):
        for m in layer.modules():
            if isinstance(getattr(m, "layer_idx", None), int):
                m.layer_idx = j


def remove_decoder_layers(
    model: nn.Module, indices: Sequence[int], layers_path: str | None = None, inplace: bool = True
) -> nn.Module:
    """The model without decoder layers `indices` (0-based), same class: the layers leave the ModuleList,
    `config.num_hidden_layers` and every per-layer config list (e.g. `layer_types`) shrink, and each remaining
    attention's `layer_idx` is renumbered so the KV cache lines up. `save_pretrained` / `from_pretrained`
    round-trip the result. In place by default (an 8B model is not copied); `inplace=False` works on a copy."""
    path, layers = decoder_layers(model, layers_path)
    removed = check_indices(indices, len(layers))
    if len(removed) == len(layers):
        raise InvalidArgument("cannot remove every decoder layer: keep at least one")
    if not inplace:
        model = copy.deepcopy(model)
        path, layers = decoder_layers(model, path)
    keep = [i for i in range(len(layers)) if i not in set(removed)]
    kept = nn.ModuleList([layers[i] for i in keep])
    renumber_layer_idx(kept)
    for config in {id(c): c for c in (model.config, model.config.get_text_config(decoder=True))}.values():
        for name in _per_layer_lists(config):
            setattr(config, name, [getattr(config, name)[i] for i in keep])
        config.num_hidden_layers = len(keep)
    parent_path, _, child = path.rpartition(".")
    setattr(model.get_submodule(parent_path) if parent_path else model, child, kept)
    model.pruned_from_units = {"units_total": len(layers), "removed": removed}
    return model


_SKIPPABLE: set[type] = set()


def _llm_units(model: nn.Module) -> list[tuple[str, nn.Module]]:
    path, layers = decoder_layers(model)
    for layer in layers:  # what a removed layer of this class becomes in a scoring view
        if type(layer) not in _SKIPPABLE:
            _SKIPPABLE.add(type(layer))
            register_bypass(type(layer), lambda _unit: SkipLayer())
    return [(f"{path}.{i}", layer) for i, layer in enumerate(layers)]


def register_llm_units() -> None:
    """Make `sglp.core.units.prunable_units` see a Hugging Face model's decoder layers as its units, and
    `sglp.core.surgery.remove_layers` remove them with `remove_decoder_layers` (on a copy unless `inplace`)."""
    from transformers import PreTrainedModel

    from sglp.core.surgery import register_remover

    register_units(PreTrainedModel, _llm_units)
    register_remover(PreTrainedModel, lambda model, ids, inplace: remove_decoder_layers(model, ids, inplace=inplace))


register_llm_units()
