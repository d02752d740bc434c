"""GradNorm, the SGLP paper's in-segment score for vision (Eqs. 24-25)."""

from __future__ import annotations

import copy
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from sglp.core.errors import InvalidArgument
from sglp.core.modes import eval_mode
from sglp.core.units import prunable_units, set_submodule, units_bypassed
from sglp.methods.scorers.base import CalibrationScorer, CalibrationSource

INITS = ("pretrained", "paper")


def gradnorm(
    model: nn.Module, batches: list[tuple[torch.Tensor, torch.Tensor]], logits: list[torch.Tensor] | None = None
) -> float:
    """Mean over batches of the global L2 norm of the gradient of the mean cross-entropy with
    respect to *all* trainable parameters of `model`:  mean_b || d CE_b / d theta ||_2.

    This is the paper's Eq. 24 (one norm over every parameter), not the zero-cost-NAS variant
    that sums per-layer norms of conv/linear weights. BatchNorm runs in eval mode (running
    statistics), so scoring never changes the shared backbone. `.grad` is left untouched.
    `logits` (one tensor per batch, computed from `model` in eval mode with a graph) may be given
    to reuse a shared prefix; otherwise they are computed here.
    """
    params = [p for p in model.parameters() if p.requires_grad]
    norms = []
    with eval_mode(model):
        outs = logits if logits is not None else [model(x) for x, _ in batches]
        for out, (_, y) in zip(outs, batches):
            loss = F.cross_entropy(out, y)
            grads = torch.autograd.grad(loss, params, allow_unused=True, retain_graph=logits is not None)
            norms.append(torch.sqrt(sum((g.double() ** 2).sum() for g in grads if g is not None)).item())
    return sum(norms) / len(norms)


def reinitialise(model: nn.Module, seed: int) -> nn.Module:
    """Re-draw every parameter with its module's own `reset_parameters` (seeded); BN statistics reset."""
    torch.manual_seed(seed)
    for m in model.modules():
        if hasattr(m, "reset_parameters"):
            m.reset_parameters()
        if hasattr(m, "reset_running_stats"):
            m.reset_running_stats()
    return model


class GradNormScorer(CalibrationScorer):
    """GradNorm of the candidate; `maximize=True` is the paper's rule (Eq. 25: keep the largest).

    `init="pretrained"` (default): the candidate is the pretrained network without the removed
    units. `init="paper"`: the literal reading of the paper's Sec. 3.5, "we initialize the weights of
    [the enumerated layers] and others with the weights of the pre-trained network and random
    weights, respectively": the segment's kept units carry pretrained weights and every other
    part of the network (other units, stem, head) a fixed seeded random initialisation.
    """

    needs_grad = True

    def __init__(
        self,
        num_batches: int = 1,
        batch_size: int = 64,
        maximize: bool = True,
        init: str = "pretrained",
        init_seed: int = 0,
        reuse_prefix: bool = True,
    ) -> None:
        super().__init__(num_batches, batch_size, reuse_prefix)
        if init not in INITS:
            raise InvalidArgument(f"scorer.init={init!r}: choose one of {INITS}")
        self.maximize, self.init, self.init_seed = maximize, init, init_seed
        self._twin: nn.Module | None = None
        self._pretrained_units: list[nn.Module] = []

    def prepare(self, calibration: CalibrationSource, model: nn.Module | None = None) -> None:
        super().prepare(calibration, model)
        if self.init == "paper":
            if model is None:
                raise InvalidArgument("scorer.init=paper needs the backbone in prepare(calibration, model)")
            self._pretrained_units = [m for _, m in prunable_units(model)]
            self._twin = reinitialise(copy.deepcopy(model), self.init_seed)

    def __call__(
        self,
        model: nn.Module,
        removed: tuple[int, ...],
        segment: Sequence[int] | None = None,
        kept: Sequence[int] | None = None,
    ) -> float:
        if self.init == "pretrained":
            with eval_mode(model):  # the prefix is cached in eval mode too
                return gradnorm(model, self.batches, self.logits(model, removed, segment, grad=True))
        if self._twin is None or kept is None:
            raise InvalidArgument("scorer.init=paper needs prepare(calibration, model) and the segment's kept units")
        names = [n for n, _ in prunable_units(self._twin)]
        random_units = [self._twin.get_submodule(names[u]) for u in kept]
        with units_bypassed(self._twin, removed) as candidate:
            try:
                for u in kept:
                    set_submodule(candidate, names[u], self._pretrained_units[u])
                return gradnorm(candidate, self.batches)
            finally:
                for u, m in zip(kept, random_units):
                    set_submodule(candidate, names[u], m)
