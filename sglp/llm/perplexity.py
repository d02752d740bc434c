"""Perplexity of causal language models: the SGLP paper's in-segment score for LLMs (lower is better)."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from sglp.device import model_device
from sglp.modes import eval_mode
from sglp.scorers.base import CalibrationSource, Scorer, check_batches


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


class PerplexityScorer(Scorer):
    """Candidate score = perplexity on `num_batches` calibration batches of `batch_size` sequences (minimised).
    The candidate is the shared model with the removed layers skipped (sglp.units.units_bypassed): no copy."""

    maximize = False
    needs_grad = False

    def __init__(self, num_batches: int = 4, batch_size: int = 8) -> None:
        check_batches("PerplexityScorer", num_batches, batch_size)
        self.num_batches, self.batch_size = num_batches, batch_size
        self.batches: list[tuple[torch.Tensor, torch.Tensor]] = []

    def prepare(self, calibration: CalibrationSource, model: nn.Module | None = None) -> None:
        self.batches = list(calibration(self.batch_size, self.num_batches))

    def __call__(self, model: nn.Module, removed: tuple[int, ...], segment: Sequence[int] | None = None,
                 kept: Sequence[int] | None = None) -> float:  # fmt: skip
        return perplexity(model, self.batches)
