"""Calibration loss of the candidate: a cheap reference scorer (lower is better)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from sglp.core.modes import eval_mode
from sglp.methods.scorers.base import CalibrationScorer


class LossScorer(CalibrationScorer):
    """Mean cross-entropy of the candidate over the calibration batches, BatchNorm in eval mode."""

    maximize = False

    @torch.no_grad()
    def __call__(self, model: nn.Module, removed: tuple[int, ...], segment=None, kept=None) -> float:
        with eval_mode(model):
            outs = self.logits(model, removed, segment, grad=False)
            total = sum(F.cross_entropy(out, y, reduction="sum").item() for out, (_, y) in zip(outs, self.batches))
        return total / sum(len(y) for _, y in self.batches)
