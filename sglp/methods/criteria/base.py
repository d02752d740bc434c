"""Base class of per-unit importance criteria, and the tensors they are built from."""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Iterator, Sequence

import torch
from torch import nn

from sglp.core.device import model_device
from sglp.core.errors import InvalidArgument
from sglp.core.modes import channels_last
from sglp.core.units import prunable_units
from sglp.methods.scorers.base import CalibrationSource, Scorer, check_batches

Batches = list[tuple[torch.Tensor, torch.Tensor]]


class UnitCriterion(Scorer):
    """One importance per prunable unit, computed once on the full network by `unit_importance` (higher = keep)."""

    maximize = True
    needs_grad = False  # computing the importance backpropagates through the model (pre-flight memory estimate)

    def __init__(self, num_batches: int = 1, batch_size: int = 64) -> None:
        check_batches(type(self).__name__, num_batches, batch_size, min_batches=0)
        self.num_batches, self.batch_size = num_batches, batch_size
        self.importance: torch.Tensor | None = None  # (L,) float64, set by prepare()

    def prepare(self, calibration: CalibrationSource, model: nn.Module | None = None) -> None:
        """Fetch the calibration batches (if the criterion reads data) and compute `importance`."""
        if model is None:
            raise InvalidArgument(f"{type(self).__name__} needs the backbone: prepare(calibration, model)")
        batches: Batches = []
        if self.num_batches > 0:
            device = model_device(model)
            batches = [
                (channels_last(x.to(device)), y.to(device)) for x, y in calibration(self.batch_size, self.num_batches)
            ]
            if not batches:
                raise InvalidArgument(
                    f"{type(self).__name__} got no calibration batch of {self.batch_size} examples: "
                    "lower scorer.batch_size"
                )
        importance = torch.as_tensor(self.unit_importance(model, batches), dtype=torch.float64)
        num_units = len(prunable_units(model))
        if importance.shape != (num_units,):
            raise RuntimeError(f"{type(self).__name__} gave {tuple(importance.shape)} scores for {num_units} units")
        self.importance = importance

    @abstractmethod
    def unit_importance(self, model: nn.Module, batches: Batches) -> torch.Tensor:
        """(L,) importance of each prunable unit of `model` (higher = more important)."""

    def __call__(
        self,
        model: nn.Module,
        removed: tuple[int, ...],
        segment: Sequence[int] | None = None,
        kept: Sequence[int] | None = None,
    ) -> float:
        """Summed importance of the kept units (of `segment` when given, else of the network)."""
        if self.importance is None:
            raise InvalidArgument(f"{type(self).__name__}: call prepare(calibration, model) before scoring")
        if kept is None:
            units = segment if segment is not None else range(len(self.importance))
            kept = [u for u in units if u not in set(removed)]
        return float(self.importance[list(kept)].sum()) if len(kept) else 0.0


def filter_weights(unit: nn.Module) -> Iterator[torch.Tensor]:
    """Weights of the unit's conv and linear layers, shaped (filters, ...): one row per output
    channel / neuron (a PyTorch conv weight is (F, N, K, K): filter i is W[i])."""
    for m in unit.modules():
        if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)):
            yield m.weight


def check_has_filters(name: str, unit: nn.Module, criterion: str) -> None:
    if next(filter_weights(unit), None) is None:
        raise InvalidArgument(f"{criterion}: unit {name} ({type(unit).__name__}) has no conv or linear weight")


def channel_vectors(t: torch.Tensor) -> torch.Tensor:
    """Rows of per-position channel vectors: (B, C, H, W) -> (B*H*W, C); (B, T, D) -> (B*T, D); (B, D) as is."""
    if t.dim() == 4:
        return t.permute(0, 2, 3, 1).reshape(-1, t.shape[1])
    if t.dim() == 3:
        return t.reshape(-1, t.shape[-1])
    return t.reshape(t.shape[0], -1)
