"""Perplexity of causal language models: the causal-LM kind's quality measure (and the SGLP paper's in-segment
score for LLMs, sglp.methods.scorers.perplexity)."""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch
import torch.nn.functional as F
from torch import nn

from sglp.core.device import model_device
from sglp.core.modes import eval_mode


def logits_of(model: nn.Module, ids: torch.Tensor) -> torch.Tensor:
    """(B, T, V) next-token logits of a Hugging Face causal LM (no KV cache)."""
    return model(input_ids=ids, use_cache=False).logits


@torch.inference_mode()
def token_nll(model: nn.Module, batches: Iterable[tuple[torch.Tensor, torch.Tensor]]) -> tuple[float, int]:
    """(summed negative log-likelihood, number of predicted tokens): token t+1 predicted from tokens <= t, in
    float32 whatever the model's dtype."""
    total, count = 0.0, 0
    device = model_device(model)
    with eval_mode(model):
        for ids, _ in batches:
            ids = ids.to(device)
            logits = logits_of(model, ids)[:, :-1].float()
            target = ids[:, 1:]
            total += F.cross_entropy(logits.reshape(-1, logits.shape[-1]), target.reshape(-1), reduction="sum").item()
            count += target.numel()
    return total, count


def perplexity(model: nn.Module, batches: Iterable[tuple[torch.Tensor, torch.Tensor]]) -> float:
    """exp(mean token NLL) over the batches."""
    total, count = token_nll(model, batches)
    return math.exp(total / count) if count else float("nan")
