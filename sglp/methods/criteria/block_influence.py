"""ShortGPT's block influence (Men et al. 2024): BI_i = 1 - E[cos(x_i, x_{i+1})], the mean cosine similarity
between a unit's input and output vectors (per token for LLMs; per spatial position, over channels, for CNNs).

Generalised to units whose output shape differs from their input (a strided residual block, a widening VGG
layer): the output is compared with what the network computes *without* the unit, `bypass(input)` (for
identity bypasses this is ShortGPT's definition exactly).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from sglp.core.modes import eval_mode
from sglp.core.units import bypass_of, prunable_units
from sglp.methods.criteria.base import Batches, UnitCriterion, channel_vectors


class BlockInfluence(UnitCriterion):
    """BI per unit over the calibration batches (BatchNorm in eval mode); low BI = the unit barely changes
    its input = removed first."""

    def __init__(self, num_batches: int = 2, batch_size: int = 64) -> None:
        super().__init__(num_batches, batch_size)

    @torch.no_grad()
    def unit_importance(self, model: nn.Module, batches: Batches) -> torch.Tensor:
        units = prunable_units(model)
        bypasses = [bypass_of(u) for _, u in units]
        cos_sum = torch.zeros(len(units), dtype=torch.float64)
        count = torch.zeros(len(units), dtype=torch.float64)

        def hook(i: int):
            def fn(_m, args, kwargs, out):
                x = args[0] if args else kwargs["hidden_states"]  # LLM decoder layers may get it by keyword
                out = out[0] if isinstance(out, tuple) else out
                a, b = channel_vectors(bypasses[i](x)), channel_vectors(out)
                cos = F.cosine_similarity(a.double(), b.double(), dim=1, eps=1e-12)
                cos_sum[i] += cos.sum()
                count[i] += cos.numel()

            return fn

        handles = [u.register_forward_hook(hook(i), with_kwargs=True) for i, (_, u) in enumerate(units)]
        try:
            with eval_mode(model):
                for x, _ in batches:
                    model(x)
        finally:
            for h in handles:
                h.remove()
        return 1.0 - cos_sum / count
