"""SR-init (Tang et al. 2023, "SR-init: an interpretable layer pruning method"): stochastically re-initialise
one unit's parameters at a time and measure the calibration accuracy drop; units whose re-initialisation
hurts least are removed first."""

from __future__ import annotations

import torch
from torch import nn

from sglp.core.modes import eval_mode
from sglp.core.units import prunable_units
from sglp.methods.criteria.base import Batches, UnitCriterion


def reinitialise_parameters(unit: nn.Module, seed: int) -> None:
    """Re-draw the unit's parameters with each submodule's own `reset_parameters` (seeded); buffers such as
    BatchNorm running statistics keep their trained values (they are not parameters)."""
    buffers = {k: v.clone() for k, v in unit.named_buffers()}
    with torch.random.fork_rng(devices=[]):  # leave the global RNG stream as it was
        torch.manual_seed(seed)
        for m in unit.modules():
            if hasattr(m, "reset_parameters"):
                m.reset_parameters()
    for k, v in unit.named_buffers():
        v.copy_(buffers[k])


@torch.no_grad()
def accuracy(model: nn.Module, batches: Batches) -> float:
    with eval_mode(model):
        correct = sum((model(x).argmax(1) == y).sum().item() for x, y in batches)
    return 100.0 * correct / sum(len(y) for _, y in batches)


class SRInit(UnitCriterion):
    """Importance = mean over `repeats` seeded re-initialisations of (dense accuracy - accuracy with the unit
    re-initialised), in percentage points, on the calibration batches. The backbone is restored exactly."""

    def __init__(self, num_batches: int = 2, batch_size: int = 128, repeats: int = 1, seed: int = 0) -> None:
        super().__init__(num_batches, batch_size)
        self.repeats, self.seed = repeats, seed

    def unit_importance(self, model: nn.Module, batches: Batches) -> torch.Tensor:
        dense = accuracy(model, batches)
        drops = []
        for i, (_, unit) in enumerate(prunable_units(model)):
            saved = {k: v.clone() for k, v in unit.state_dict().items()}
            total = 0.0
            try:
                for r in range(self.repeats):
                    reinitialise_parameters(unit, self.seed * 1_000_003 + i * 1009 + r)
                    total += dense - accuracy(model, batches)
            finally:
                unit.load_state_dict(saved)
            drops.append(total / self.repeats)
        return torch.tensor(drops)
