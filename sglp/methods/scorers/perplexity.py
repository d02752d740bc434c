"""The perplexity scorer: the SGLP paper's in-segment score for LLMs (lower is better; the measure itself is
sglp.kinds.causal_lm.perplexity)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from sglp.core.device import model_device
from sglp.core.modes import eval_mode
from sglp.kinds.causal_lm.perplexity import logits_of, perplexity, token_nll
from sglp.methods.scorers.base import CalibrationSource, Scorer, check_batches


class ReplayLayer(nn.Module):
    """Stands in for decoder layer 0 while one segment's candidates are scored: returns the cached hidden states
    entering the segment's first layer for the batch being run (`batch`), whatever it is given."""

    def __init__(self, cache: list[torch.Tensor]) -> None:
        super().__init__()
        self.cache, self.batch = cache, 0

    def forward(self, hidden_states=None, *args, **kwargs):
        return self.cache[self.batch]


class _PrefixDone(Exception):
    """Raised by the capture hook: the rest of the forward pass is not needed."""


@torch.inference_mode()
def hidden_before(model: nn.Module, layer: int, batches: Sequence[tuple[torch.Tensor, torch.Tensor]]) -> list:
    """[(B, T, d)] hidden states entering decoder layer `layer` for each batch; the forward stops there."""
    from sglp.kinds.causal_lm.layers import decoder_layers

    _, layers = decoder_layers(model)
    captured: list[torch.Tensor] = []

    def capture(module, args, kwargs):
        captured.append(kwargs["hidden_states"] if "hidden_states" in kwargs else args[0])
        raise _PrefixDone

    handle = layers[layer].register_forward_pre_hook(capture, with_kwargs=True)
    device = model_device(model)
    try:
        with eval_mode(model):
            for ids, _ in batches:
                try:
                    logits_of(model, ids.to(device))
                except _PrefixDone:
                    pass
    finally:
        handle.remove()
    return captured


class PerplexityScorer(Scorer):
    """Candidate score = perplexity on `num_batches` calibration batches of `batch_size` sequences (minimised).
    The candidate is the shared model with the removed layers skipped (sglp.core.units.units_bypassed): no copy.

    `reuse_prefix`: every candidate of a segment shares the layers before it (and the units removed there), so the
    hidden states entering the segment are computed once per segment and cached (batches x B x T x d in the
    model's dtype); a candidate then runs the embedding and the layers from the segment on. Scores are identical
    to running the whole model (tests/test_llm_layers.py)."""

    kinds = ("causal_lm",)

    maximize = False
    needs_grad = False

    def __init__(self, num_batches: int = 4, batch_size: int = 8, reuse_prefix: bool = True) -> None:
        check_batches("PerplexityScorer", num_batches, batch_size)
        self.num_batches, self.batch_size, self.reuse_prefix = num_batches, batch_size, reuse_prefix
        self.batches: list[tuple[torch.Tensor, torch.Tensor]] = []
        self._prefix_key: tuple | None = None
        self._prefix: list[torch.Tensor] = []

    def prepare(self, calibration: CalibrationSource, model: nn.Module | None = None) -> None:
        self.batches = list(calibration(self.batch_size, self.num_batches))

    def __call__(self, model: nn.Module, removed: tuple[int, ...], segment: Sequence[int] | None = None,
                 kept: Sequence[int] | None = None) -> float:  # fmt: skip
        if not (self.reuse_prefix and segment and min(segment) > 0):
            return perplexity(model, self.batches)
        from sglp.kinds.causal_lm.layers import SkipLayer, decoder_layers

        start = min(segment)
        key = (id(model), start, tuple(u for u in removed if u < start))
        if key != self._prefix_key:
            self._prefix = []  # free the previous segment's cache first
            self._prefix = hidden_before(model, start, self.batches)
            self._prefix_key = key
        _, layers = decoder_layers(model)
        prefix = [layers[i] for i in range(start)]
        replay = ReplayLayer(self._prefix)
        total, count = 0.0, 0
        try:
            layers[0] = replay
            for i in range(1, start):
                layers[i] = SkipLayer()
            for b, batch in enumerate(self.batches):
                replay.batch = b
                t, c = token_nll(model, [batch])
                total, count = total + t, count + c
        finally:
            for i, layer in enumerate(prefix):
                layers[i] = layer
        return math.exp(total / count) if count else float("nan")

    def release(self) -> None:
        self._prefix_key, self._prefix = None, []
